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
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::client::ClientAddr;
use crate::password::HashError;
use crate::secret::SecretToken;
use crate::store::{
    Account, AccountForUpdate, AuditEntry, AuthError, AuthStore, InviteId, OrgName, PendingInvite,
    Registration, Session,
};

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
// DTOs

/// `POST /v1/auth/register`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistrationForCreate {
    /// The organization's name, 1-100 characters.
    pub organization: String,
    /// The owner's email (normalised: trimmed, lowercased).
    pub email: String,
    /// 12-128 characters, not the email, not a common password.
    pub password: String,
}

/// `POST /v1/auth/login`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginForCreate {
    /// Email.
    pub email: String,
    /// Password.
    pub password: String,
}

/// `POST /v1/auth/refresh`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshForCreate {
    /// The refresh token of the latest token response.
    pub refresh_token: String,
}

/// `POST /v1/auth/logout`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutForCreate {
    /// Any refresh token of the session to end.
    pub refresh_token: String,
}

/// `POST /v1/auth/invites`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteForCreate {
    /// Whom to invite.
    pub email: String,
    /// `owner`, `admin`, `staff` or `member`; at most the inviter's own role.
    pub role: String,
}

/// `POST /v1/auth/accept-invite`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteAcceptance {
    /// The invite token.
    pub invite_token: String,
    /// The new account's password.
    pub password: String,
}

/// `PATCH /v1/auth/accounts/{id}`: at least one field.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountForPatch {
    /// The new role.
    pub role: Option<String>,
    /// Disable (true) or re-enable (false).
    pub disabled: Option<bool>,
}

/// An account, as `me` and token responses show it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    /// Account id.
    pub id: String,
    /// Normalised email.
    pub email: String,
    /// Organization id.
    pub org: String,
    /// Role.
    pub role: String,
}

impl From<&Account> for AccountView {
    fn from(a: &Account) -> Self {
        Self {
            id: a.id.to_string(),
            email: a.email.to_string(),
            org: a.org.to_string(),
            role: a.role.to_string(),
        }
    }
}

/// An account, as admins see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountDetail {
    /// Account id.
    pub id: String,
    /// Normalised email.
    pub email: String,
    /// Organization id.
    pub org: String,
    /// Role.
    pub role: String,
    /// Whether it is disabled.
    pub disabled: bool,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

impl From<&Account> for AccountDetail {
    fn from(a: &Account) -> Self {
        Self {
            id: a.id.to_string(),
            email: a.email.to_string(),
            org: a.org.to_string(),
            role: a.role.to_string(),
            disabled: a.disabled,
            created_at: rfc3339(a.created_at),
        }
    }
}

/// One page of accounts.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountList {
    /// Accounts in id order.
    pub items: Vec<AccountDetail>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A session's tokens.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// The access token (a JWT, EdDSA-signed).
    pub access_token: String,
    /// The refresh token: opaque, one use (a second use within 10 s of the
    /// first, as from two tabs, gets its own new token), 30 days, and never
    /// beyond 90 days from the login.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Who logged in.
    pub account: AccountView,
}

impl From<&Session> for TokenResponse {
    fn from(s: &Session) -> Self {
        Self {
            access_token: s.access.token.clone(),
            refresh_token: s.refresh_token.expose().to_owned(),
            token_type: "Bearer".to_owned(),
            expires_in: s.access.expires_in,
            account: AccountView::from(&s.account),
        }
    }
}

/// A created invite.
#[derive(Debug, Serialize, ToSchema)]
pub struct InviteView {
    /// Its id, to revoke it by.
    pub id: String,
    /// Hand this to the invitee; it works once.
    pub invite_token: String,
    /// When it expires (RFC 3339).
    pub expires_at: String,
}

/// A pending invite (its token is never shown again).
#[derive(Debug, Serialize, ToSchema)]
pub struct PendingInviteView {
    /// Invite id.
    pub id: String,
    /// Whom it invites.
    pub email: String,
    /// The role it grants.
    pub role: String,
    /// The account that created it.
    pub invited_by: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it stops being accepted (RFC 3339).
    pub expires_at: String,
}

impl From<&PendingInvite> for PendingInviteView {
    fn from(i: &PendingInvite) -> Self {
        Self {
            id: i.id.to_string(),
            email: i.email.to_string(),
            role: i.role.to_string(),
            invited_by: i.invited_by.to_string(),
            created_at: rfc3339(i.created_at),
            expires_at: rfc3339(i.expires_at),
        }
    }
}

/// One page of pending invites.
#[derive(Debug, Serialize, ToSchema)]
pub struct InviteList {
    /// Invites in id order.
    pub items: Vec<PendingInviteView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// One audit event.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryView {
    /// Event id.
    pub id: String,
    /// When (RFC 3339).
    pub time: String,
    /// What: `register`, `login_succeeded`, `login_failed`, `lockout`,
    /// `refresh_reuse`, `logout`, `role_changed`, `account_disabled`,
    /// `account_enabled`, `invite_created`, `invite_accepted`,
    /// `invite_revoked`, `invites_listed`, `key_rotated`.
    pub action: String,
    /// Who did it.
    pub actor: Option<String>,
    /// To whom.
    pub target: Option<String>,
    /// From where.
    pub ip: Option<String>,
    /// Details.
    pub detail: Option<String>,
}

impl From<&AuditEntry> for AuditEntryView {
    fn from(e: &AuditEntry) -> Self {
        Self {
            id: e.id.clone(),
            time: rfc3339(e.time),
            action: e.event.action.as_str().to_owned(),
            actor: e.event.actor.as_ref().map(ToString::to_string),
            target: e.event.target.as_ref().map(ToString::to_string),
            ip: e.event.ip.clone(),
            detail: e.event.detail.clone(),
        }
    }
}

/// One page of the audit log.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    /// Events, newest first.
    pub items: Vec<AuditEntryView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

fn tokens(status: StatusCode, session: &Session) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(TokenResponse::from(session)),
    )
        .into_response()
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
