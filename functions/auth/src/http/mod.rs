//! The auth HTTP contract, mapped onto [`AuthStore`].
//!
//! Handlers are thin: parse the body (strict JSON, unknown fields refused)
//! into domain types, answering 400 naming the field at fault; check the
//! caller's role declaratively with [`Authenticated::require`]; call one
//! store method; render the result. Every route is under `/v1/auth`, as API
//! Gateway routes it. Every 401 carries `WWW-Authenticate: Bearer` (the
//! shared error type adds it); token responses are `Cache-Control: no-store`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use constellation_core::auth::{AccountId, Email, Password, Role};
use constellation_platform::tokens::TokenVerifier;
use constellation_web::auth::Authenticated;
use constellation_web::error::ProblemType;
use constellation_web::extract::{query_param, query_params};
use constellation_web::openapi::openapi_route;
use constellation_web::openapi::{Conventions, IdempotentDef, LinkDef, PageQuery};
use constellation_web::pagination::RawPageParams;
use constellation_web::{ApiError, Json, PageParams};
use lambda_http::request::RequestContext;
use schemas::{AccountPatchSchema, JwksSchema};
use utoipa::{IntoParams, OpenApi};

mod dto;
mod schemas;

pub use dto::*;
use dto::{rfc3339, tokens};

use crate::client::ClientAddr;
use crate::password::HashError;
use crate::secret::SecretToken;
use crate::store::{AccountForUpdate, AuthError, AuthStore, InviteId, OrgName, Registration};

/// The largest request body auth accepts.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AuthState {
    /// The rules.
    pub store: Arc<AuthStore>,
    /// Public keys, for the JWKS.
    pub verifier: Arc<TokenVerifier>,
    /// Proxies trusted to append to `X-Forwarded-For` (see [`ClientAddr::resolve`]).
    pub trusted_proxies: usize,
}

/// The auth routes (without the shared layers nor the token layer; see [`crate::app_with`]).
pub fn router(state: AuthState) -> Router {
    Router::new()
        .route("/v1/auth/register", post(register))
        .route("/v1/auth/login", post(login))
        .route("/v1/auth/refresh", post(refresh))
        .route("/v1/auth/logout", post(logout))
        .route("/v1/auth/me", get(me))
        .route("/v1/auth/invites", post(create_invite).get(list_invites))
        .route("/v1/auth/invites/{id}", delete(revoke_invite))
        .route("/v1/auth/accept-invite", post(accept_invite))
        .route("/v1/auth/accounts", get(list_accounts))
        .route("/v1/auth/accounts/{id}", patch(update_account))
        .route("/v1/auth/audit", get(list_audit))
        .route("/v1/auth/.well-known/jwks.json", get(get_jwks))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
        .merge(openapi_route("/v1/auth/openapi.json", ApiDoc::openapi))
}

/// The auth part of the OpenAPI document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Constellation auth",
        description = "Organizations, accounts, roles, sessions and the public key set."
    ),
    paths(
        register, login, refresh, logout, me, create_invite, list_invites, revoke_invite,
        accept_invite, list_accounts, update_account, list_audit, get_jwks
    ),
    components(schemas(
        RegistrationForCreate, LoginForCreate, RefreshForCreate, LogoutForCreate,
        InviteForCreate, InviteAcceptance, AccountPatchSchema, TokenResponse, AccountView,
        AccountDetail, AccountList, InviteView, PendingInviteView, InviteList, AuditEntryView,
        AuditList, JwksSchema
    )),
    modifiers(&CONVENTIONS)
)]
pub struct ApiDoc;

/// The shared conventions, and the links that chain a session's tokens into
/// refresh and logout, and an id into the calls that take it.
const CONVENTIONS: Conventions = Conventions {
    service: crate::NAME,
    links: &[
        LinkDef {
            from: "register",
            status: 201,
            to: "login",
            parameters: &[],
            body: &[
                ("email", "$request.body#/email"),
                ("password", "$request.body#/password"),
            ],
        },
        session_link("register", 201, "refresh"),
        session_link("register", 201, "logout"),
        session_link("login", 200, "refresh"),
        session_link("login", 200, "logout"),
        session_link("refresh", 200, "refresh"),
        session_link("refresh", 200, "logout"),
        session_link("accept_invite", 201, "refresh"),
        id_link(
            "accept_invite",
            201,
            "update_account",
            &[("id", "$response.body#/account/id")],
        ),
        id_link(
            "create_invite",
            201,
            "revoke_invite",
            &[("id", "$response.body#/id")],
        ),
        LinkDef {
            from: "create_invite",
            status: 201,
            to: "accept_invite",
            parameters: &[],
            body: &[
                ("invite_token", "$response.body#/invite_token"),
                ("password", "invitee password 1"),
            ],
        },
        id_link(
            "list_invites",
            200,
            "revoke_invite",
            &[("id", "$response.body#/items/0/id")],
        ),
        id_link(
            "list_accounts",
            200,
            "update_account",
            &[("id", "$response.body#/items/0/id")],
        ),
        id_link("me", 200, "update_account", &[("id", "$response.body#/id")]),
    ],
    idempotent: IDEMPOTENT,
};

/// No auth route is behind the `Idempotency-Key` layer: the layer stores the
/// response for replay, and the one retryable write here, creating an
/// invite, answers a usable one-time token that must never be stored (only
/// its hash is). Register, login and accept-invite act before any account
/// exists to scope a key to; refresh and logout are single-use by design.
const IDEMPOTENT: &[IdempotentDef] = &[];

/// After `from` issued tokens, `to` with its refresh token.
const fn session_link(from: &'static str, status: u16, to: &'static str) -> LinkDef {
    LinkDef {
        from,
        status,
        to,
        parameters: &[],
        body: &[("refresh_token", "$response.body#/refresh_token")],
    }
}

/// After `from` answered an id, `to` on that id.
const fn id_link(
    from: &'static str,
    status: u16,
    to: &'static str,
    id: &'static [(&'static str, &'static str)],
) -> LinkDef {
    LinkDef {
        from,
        status,
        to,
        parameters: id,
        body: &[],
    }
}

/// `{id}`: an account or invite id.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct IdPathDoc {
    #[param(schema_with = schemas::id)]
    id: String,
}

// ---------------------------------------------------------------------------
// Errors

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Invalid(v) => v.into(),
            AuthError::EmailTaken => ApiError::Client {
                problem: ProblemType::Conflict,
                detail: "email: already has an account".to_owned(),
                field: Some("email".to_owned()),
            },
            // Rendered with `WWW-Authenticate: Bearer ...` by the shared error type.
            e @ (AuthError::InvalidCredentials
            | AuthError::InvalidRefreshToken
            | AuthError::InvalidInvite
            | AuthError::AccountInactive) => {
                ApiError::client(ProblemType::Unauthorized, e.to_string())
            }
            AuthError::LockedOut { retry_after } => ApiError::TooManyRequests { retry_after },
            AuthError::Forbidden(why) => ApiError::client(ProblemType::Forbidden, why),
            AuthError::NotFound => ApiError::not_found("no such account"),
            AuthError::InviteNotFound => ApiError::not_found("no such invite"),
            e @ (AuthError::LastOwner | AuthError::Contention) => {
                ApiError::client(ProblemType::Conflict, e.to_string())
            }
            AuthError::Hash(e @ HashError::Busy) => ApiError::Unavailable(e.into()),
            AuthError::Hash(e) => ApiError::internal(e),
            AuthError::Store(e) => e.into(),
        }
    }
}

type Reply<T> = Result<T, ApiError>;

// ---------------------------------------------------------------------------
// Extractors

/// The client's address, which the client cannot choose: API Gateway's
/// `requestContext.http.sourceIp` under Lambda, the socket peer under
/// `serve`, or an entry of `X-Forwarded-For` only as far as
/// [`AuthState::trusted_proxies`] vouch for it (see [`ClientAddr::resolve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub ClientAddr);

/// The connection's peer: API Gateway's `sourceIp`, else the socket peer.
fn peer(parts: &Parts) -> Option<IpAddr> {
    if let Some(RequestContext::ApiGatewayV2(ctx)) = parts.extensions.get::<RequestContext>() {
        return ctx
            .http
            .source_ip
            .as_deref()
            .and_then(|ip| ip.trim().parse().ok());
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

impl FromRequestParts<AuthState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AuthState,
    ) -> Result<Self, Self::Rejection> {
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",");
        let forwarded = (!forwarded.is_empty()).then_some(forwarded.as_str());
        Ok(Self(ClientAddr::resolve(
            peer(parts),
            forwarded,
            state.trusted_proxies,
        )))
    }
}

fn page_params(
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<PageParams, ApiError> {
    let pairs = query_params(q, &["limit", "cursor"])?;
    PageParams::parse(RawPageParams {
        limit: query_param(&pairs, "limit").map(str::to_owned),
        cursor: query_param(&pairs, "cursor").map(str::to_owned),
    })
}

// ---------------------------------------------------------------------------
// Handlers

/// Creates an organization and its owner account, and logs the owner in.
#[utoipa::path(
    post,
    path = "/v1/auth/register",
    request_body = RegistrationForCreate,
    responses(
        (status = 201, description = "Registered and logged in", body = TokenResponse),
        (status = 400, description = "Invalid organization, email or password, or a malformed body; `field` names it"),
        (status = 409, description = "The email already has an account"),
        (status = 503, description = "Password hashing is at capacity, or storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn register(
    State(state): State<AuthState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<RegistrationForCreate>,
) -> Reply<Response> {
    let organization = OrgName::parse_input(&body.organization)?;
    let email = Email::parse(&body.email)?;
    let password = Password::new_for(&body.password, &email)?;
    let session = state
        .store
        .register(
            Registration {
                organization,
                email,
                password,
            },
            &ip,
        )
        .await?;
    Ok(tokens(StatusCode::CREATED, &session))
}

/// Logs in with email and password.
#[utoipa::path(
    post,
    path = "/v1/auth/login",
    request_body = LoginForCreate,
    responses(
        (status = 200, description = "Logged in", body = TokenResponse),
        (status = 400, description = "Invalid email or password shape, or a malformed body; `field` names it"),
        (status = 401, description = "Wrong email or password, or the account is disabled"),
        (status = 409, description = "The session is being changed concurrently; retry"),
        (status = 429, description = "Too many failed logins for this email or address; retry after Retry-After"),
        (status = 503, description = "Password hashing is at capacity, or storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn login(
    State(state): State<AuthState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<LoginForCreate>,
) -> Reply<Response> {
    let email = Email::parse(&body.email)?;
    let password = Password::presented(&body.password)?;
    let session = state.store.login(&email, &password, &ip).await?;
    Ok(tokens(StatusCode::OK, &session))
}

/// Exchanges a refresh token for new tokens (the old refresh token is spent;
/// presented again within 10 s it gets new tokens of its own, later it
/// revokes the session).
#[utoipa::path(
    post,
    path = "/v1/auth/refresh",
    request_body = RefreshForCreate,
    responses(
        (status = 200, description = "New tokens", body = TokenResponse),
        (status = 400, description = "A malformed body; `field` names it"),
        (status = 401, description = "Unknown, expired, reused or revoked refresh token, a session past its 90 days, or a disabled account"),
        (status = 409, description = "The session is being changed concurrently; retry"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn refresh(
    State(state): State<AuthState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<RefreshForCreate>,
) -> Reply<Response> {
    let token =
        SecretToken::presented(&body.refresh_token).ok_or(AuthError::InvalidRefreshToken)?;
    let session = state.store.refresh(&token, &ip).await?;
    Ok(tokens(StatusCode::OK, &session))
}

/// Ends the session a refresh token belongs to.
#[utoipa::path(
    post,
    path = "/v1/auth/logout",
    request_body = LogoutForCreate,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The session is over (also for unknown tokens)"),
        (status = 400, description = "`refresh_token` is not a refresh token, or a malformed body"),
        (status = 409, description = "The session is being changed concurrently; retry"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn logout(
    State(state): State<AuthState>,
    Authenticated(principal): Authenticated,
    ClientIp(ip): ClientIp,
    Json(body): Json<LogoutForCreate>,
) -> Reply<StatusCode> {
    let token = SecretToken::presented(&body.refresh_token)
        .ok_or_else(|| ApiError::invalid("refresh_token", "is not a refresh token"))?;
    state.store.logout(&principal, &token, &ip).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's account.
#[utoipa::path(
    get,
    path = "/v1/auth/me",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = AccountView),
        (status = 401, description = "No valid access token, or the account is disabled or gone"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn me(
    State(state): State<AuthState>,
    Authenticated(principal): Authenticated,
) -> Reply<axum::Json<AccountView>> {
    let account = state.store.me(&principal).await?;
    Ok(axum::Json(AccountView::from(&account)))
}

/// Invites someone into the caller's organization (admins and owners).
#[utoipa::path(
    post,
    path = "/v1/auth/invites",
    request_body = InviteForCreate,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The one-time invite token", body = InviteView,
),
        (status = 400, description = "Invalid email or role, or a malformed body; `field` names it"),
        (status = 403, description = "Not an admin, or the role is above the caller's"),
        (status = 409, description = "The email already has an account, or a concurrent change; retry"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn create_invite(
    State(state): State<AuthState>,
    auth: Authenticated,
    ClientIp(ip): ClientIp,
    Json(body): Json<InviteForCreate>,
) -> Reply<Response> {
    let principal = auth.require(Role::Admin)?;
    let email = Email::parse(&body.email)?;
    let role = Role::parse("role", &body.role)?;
    let invite = state
        .store
        .create_invite(principal, &email, role, &ip)
        .await?;
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(InviteView {
            id: invite.id.to_string(),
            invite_token: invite.token.expose().to_owned(),
            expires_at: rfc3339(invite.expires_at),
        }),
    )
        .into_response())
}

/// The caller's organization's pending invites (admins and owners).
#[utoipa::path(
    get,
    path = "/v1/auth/invites",
    params(PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page", body = InviteList),
        (status = 400, description = "Invalid limit or cursor, or a parameter this route does not take; `field` names it"),
        (status = 403, description = "Not an admin"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn list_invites(
    State(state): State<AuthState>,
    auth: Authenticated,
    ClientIp(ip): ClientIp,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Reply<axum::Json<InviteList>> {
    let principal = auth.require(Role::Admin)?;
    let page = page_params(query)?;
    let (invites, next_cursor) = state
        .store
        .list_invites(principal, page.limit, page.cursor, &ip)
        .await?;
    Ok(axum::Json(InviteList {
        items: invites.iter().map(PendingInviteView::from).collect(),
        next_cursor,
    }))
}

/// Revokes a pending invite (admins and owners): its token stops working.
#[utoipa::path(
    delete,
    path = "/v1/auth/invites/{id}",
    params(IdPathDoc),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "Invalid id"),
        (status = 403, description = "Not an admin, or the invite's role is above the caller's"),
        (status = 404, description = "No such pending invite in the caller's organization"),
        (status = 409, description = "The invite is being changed concurrently; retry"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn revoke_invite(
    State(state): State<AuthState>,
    auth: Authenticated,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
) -> Reply<StatusCode> {
    let principal = auth.require(Role::Admin)?;
    let id = InviteId::parse(&id)?;
    state.store.revoke_invite(principal, &id, &ip).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Accepts an invite: creates the account and logs it in.
#[utoipa::path(
    post,
    path = "/v1/auth/accept-invite",
    request_body = InviteAcceptance,
    responses(
        (status = 201, description = "Account created and logged in", body = TokenResponse),
        (status = 400, description = "The password breaks the policy, or a malformed body; `field` names it"),
        (status = 401, description = "Unknown, expired, used or revoked invite token"),
        (status = 403, description = "The inviter is gone, disabled, or may no longer grant the role"),
        (status = 409, description = "The email already has an account, or a concurrent change; retry"),
        (status = 503, description = "Password hashing is at capacity, or storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn accept_invite(
    State(state): State<AuthState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<InviteAcceptance>,
) -> Reply<Response> {
    let token = SecretToken::presented(&body.invite_token).ok_or(AuthError::InvalidInvite)?;
    let session = state
        .store
        .accept_invite(&token, &body.password, &ip)
        .await?;
    Ok(tokens(StatusCode::CREATED, &session))
}

/// Lists the caller's organization's accounts (admins and owners).
#[utoipa::path(
    get,
    path = "/v1/auth/accounts",
    params(PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page", body = AccountList),
        (status = 400, description = "Invalid limit or cursor, or a parameter this route does not take; `field` names it"),
        (status = 403, description = "Not an admin"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn list_accounts(
    State(state): State<AuthState>,
    auth: Authenticated,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Reply<axum::Json<AccountList>> {
    let principal = auth.require(Role::Admin)?;
    let page = page_params(query)?;
    let (accounts, next_cursor) = state
        .store
        .list_accounts(principal, page.limit, page.cursor)
        .await?;
    Ok(axum::Json(AccountList {
        items: accounts.iter().map(AccountDetail::from).collect(),
        next_cursor,
    }))
}

/// Changes an account's role or disabled flag (admins and owners).
#[utoipa::path(
    patch,
    path = "/v1/auth/accounts/{id}",
    params(IdPathDoc),
    request_body = AccountPatchSchema,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The account after the change", body = AccountDetail),
        (status = 400, description = "Invalid id or role, nothing to change, or a malformed body; `field` names it"),
        (status = 403, description = "The caller's role does not allow this change"),
        (status = 404, description = "No such account in the caller's organization"),
        (status = 409, description = "The last owner cannot be demoted or disabled, or a concurrent change; retry"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn update_account(
    State(state): State<AuthState>,
    auth: Authenticated,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    Json(body): Json<AccountForPatch>,
) -> Reply<axum::Json<AccountDetail>> {
    let principal = auth.require(Role::Admin)?;
    let id = AccountId::parse(&id)?;
    let change = AccountForUpdate {
        role: body
            .role
            .as_deref()
            .map(|r| Role::parse("role", r))
            .transpose()?,
        disabled: body.disabled,
    };
    if change == AccountForUpdate::default() {
        return Err(ApiError::invalid(
            "role",
            "give `role`, `disabled`, or both",
        ));
    }
    let account = state
        .store
        .update_account(principal, &id, change, &ip)
        .await?;
    Ok(axum::Json(AccountDetail::from(&account)))
}

/// The organization's security events, newest first (admins and owners).
#[utoipa::path(
    get,
    path = "/v1/auth/audit",
    params(PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page", body = AuditList),
        (status = 400, description = "Invalid limit or cursor, or a parameter this route does not take; `field` names it"),
        (status = 403, description = "Not an admin"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn list_audit(
    State(state): State<AuthState>,
    auth: Authenticated,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Reply<axum::Json<AuditList>> {
    let principal = auth.require(Role::Admin)?;
    let page = page_params(query)?;
    let (entries, next_cursor) = state
        .store
        .audit_log(principal, page.limit, page.cursor)
        .await?;
    Ok(axum::Json(AuditList {
        items: entries.iter().map(AuditEntryView::from).collect(),
        next_cursor,
    }))
}

/// The public key set (RFC 7517) access tokens verify against.
#[utoipa::path(
    get,
    path = "/v1/auth/.well-known/jwks.json",
    responses(
        (status = 200, description = "The public key set (RFC 7517) access tokens verify against", body = JwksSchema,
            headers(("Cache-Control" = String, description = "`public, max-age=300`"))),
        (status = 503, description = "The key set could not be read; retry after Retry-After"),
    )
)]
async fn get_jwks(State(state): State<AuthState>) -> Reply<Response> {
    let jwks = state
        .verifier
        .jwks()
        .await
        .map_err(|e| ApiError::Unavailable(e.into()))?;
    Ok((
        [(header::CACHE_CONTROL, "public, max-age=300")],
        axum::Json(jwks),
    )
        .into_response())
}
