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
use constellation_web::pagination::RawPageParams;
use constellation_web::{ApiError, Json, PageParams};
use lambda_http::request::RequestContext;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

mod dto;

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

/// The auth routes (without the shared layers nor the token layer; see [`crate::app`]).
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
        .merge(openapi_route("/v1/auth/openapi.json", ApiDoc::openapi()))
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
        InviteForCreate, InviteAcceptance, AccountForPatch, TokenResponse, AccountView,
        AccountDetail, AccountList, InviteView, PendingInviteView, InviteList, AuditEntryView,
        AuditList
    )),
    modifiers(&BearerScheme)
)]
pub struct ApiDoc;

/// Declares the `bearer` security scheme the protected paths name.
#[derive(Debug)]
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".to_owned());
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
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
        (status = 400, description = "Invalid organization, email or password (the field is named)"),
        (status = 409, description = "The email already has an account"),
        (status = 503, description = "Password hashing is at capacity; retry after Retry-After seconds"),
    )
)]
async fn register(
    State(state): State<AuthState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<RegistrationForCreate>,
) -> Reply<Response> {
    let organization = OrgName::parse(&body.organization)?;
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
        (status = 400, description = "Invalid email or password shape"),
        (status = 401, description = "Wrong email or password, or the account is disabled"),
        (status = 429, description = "Too many failed logins for this email or address; see Retry-After"),
        (status = 503, description = "Password hashing is at capacity; retry after Retry-After seconds"),
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
        (status = 401, description = "Unknown, expired, reused or revoked refresh token, or a session past its 90 days"),
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
        (status = 400, description = "refresh_token is not a refresh token"),
        (status = 401, description = "No valid access token"),
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
        (status = 401, description = "No valid access token, or the account is disabled"),
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
        (status = 201, description = "The one-time invite token", body = InviteView),
        (status = 400, description = "Invalid email or role"),
        (status = 401, description = "No valid access token"),
        (status = 403, description = "Not an admin, or the role is above the caller's"),
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
    params(
        ("limit" = Option<u32>, Query, description = "1-1000, default 100"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page", body = InviteList),
        (status = 400, description = "Invalid limit or cursor"),
        (status = 401, description = "No valid access token"),
        (status = 403, description = "Not an admin"),
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
    params(("id" = String, Path, description = "Invite id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "Invalid id"),
        (status = 401, description = "No valid access token"),
        (status = 403, description = "Not an admin, or the invite's role is above the caller's"),
        (status = 404, description = "No such pending invite in the caller's organization"),
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
        (status = 400, description = "The password breaks the policy"),
        (status = 401, description = "Unknown, expired, used or revoked invite token"),
        (status = 403, description = "The inviter is gone, disabled, or may no longer grant the role"),
        (status = 409, description = "The email already has an account"),
        (status = 503, description = "Password hashing is at capacity; retry after Retry-After seconds"),
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
    params(
        ("limit" = Option<u32>, Query, description = "1-1000, default 100"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page", body = AccountList),
        (status = 400, description = "Invalid limit or cursor"),
        (status = 401, description = "No valid access token"),
        (status = 403, description = "Not an admin"),
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
    params(("id" = String, Path, description = "Account id")),
    request_body = AccountForPatch,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The account after the change", body = AccountDetail),
        (status = 400, description = "Invalid id, role, or nothing to change"),
        (status = 401, description = "No valid access token"),
        (status = 403, description = "The caller's role does not allow this change"),
        (status = 404, description = "No such account in the caller's organization"),
        (status = 409, description = "The last owner cannot be demoted or disabled"),
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
    params(
        ("limit" = Option<u32>, Query, description = "1-1000, default 100"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page", body = AuditList),
        (status = 401, description = "No valid access token"),
        (status = 403, description = "Not an admin"),
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
        (status = 200, description = "`{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\",\"kid\",\"use\":\"sig\",\"alg\":\"EdDSA\"}]}`"),
        (status = 503, description = "The key set could not be read"),
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
