//! Single sign-on's relying party (OpenID Connect, authorization code with
//! PKCE), through the `openidconnect` crate: discovery, the authorization
//! URL, the code exchange and ID-token validation (signature from the
//! provider's JWKS, `iss`, `aud`, `azp`, `exp`, `nonce`) are the crate's,
//! never written here. What the provider vouched for goes to core
//! (`AccountService::sso_sign_in`), which decides the account and its roles.
//!
//! The provider's metadata and keys are fetched at the first sign-in and kept
//! for an hour; an ID token that does not verify against them is tried once
//! more against freshly fetched ones, so a provider's key rotation is
//! followed at once.

mod plain;

pub use plain::OAuth2Endpoints;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gatehouse_core::accounts::AccountService;
use gatehouse_core::accounts::Grant;
use gatehouse_core::accounts::sso::{SsoProfile, SsoRules};
use gatehouse_core::model::accounts::{SsoFlow, User};
use gatehouse_core::model::sessions::{ClientInfo, SessionKind};
use gatehouse_core::{Error, ErrorCode};
use openidconnect::core::{CoreClient, CoreProviderMetadata, CoreResponseType};
use openidconnect::{
    AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    TokenResponse as _,
};
use serde_json::Value;

/// How long discovered metadata and keys are used before they are fetched again.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// Calls to a provider (discovery, token, userinfo) give up after this long.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest userinfo answer read.
const USERINFO_LIMIT: usize = 1 << 20;

/// Single sign-on as configured (`auth.sso`).
#[derive(Debug, Clone, Default)]
pub struct SsoSettings {
    /// Gatehouse's own origin as browsers reach it (`https://gatehouse.example.com`):
    /// callbacks are built on it. Unset: from the request's `Host`, over HTTP.
    pub public_url: Option<String>,
    /// Origins besides Gatehouse's own that `redirect_to` may point at (web UIs).
    pub redirect_origins: Vec<String>,
    pub providers: Vec<SsoProvider>,
}

/// One OpenID Connect provider.
#[derive(Clone)]
pub struct SsoProvider {
    pub id: String,
    /// Shown on sign-in pages.
    pub name: String,
    /// The OpenID Connect issuer (unused in plain OAuth2 mode).
    pub issuer: String,
    /// Set: a plain OAuth2 provider (no OpenID Connect), read through its userinfo URL.
    pub oauth2: Option<plain::OAuth2Endpoints>,
    pub client_id: String,
    pub client_secret: Option<String>,
    /// Besides `openid`.
    pub scopes: Vec<String>,
    /// The claim holding the groups, in the ID token or else in userinfo.
    pub groups_claim: String,
    /// Role mapping and the other account rules.
    pub rules: SsoRules,
}

impl std::fmt::Debug for SsoProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoProvider")
            .field("id", &self.id)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// A provider as listed for sign-in pages.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ProviderInfo {
    /// For `/api/v1/auth/sso/{id}/start`.
    pub id: String,
    /// What the button says.
    pub name: String,
    /// `oidc` (OpenID Connect) or `oauth2` (plain OAuth2).
    pub kind: &'static str,
}

/// How a finished single sign-on is handed back.
pub struct Finished {
    pub user: User,
    pub signed_in: Grant,
    pub redirect_to: Option<String>,
}

/// What the provider sent back to the callback.
pub struct Answer<'a> {
    pub code: &'a str,
    pub state: &'a str,
    /// The issuer, from providers that name it (RFC 9207).
    pub iss: Option<&'a str>,
}

/// The relying party for every configured provider.
pub struct Sso {
    settings: SsoSettings,
    http: openidconnect::reqwest::Client,
    metadata: Mutex<HashMap<String, (CoreProviderMetadata, Instant)>>,
}

impl Sso {
    pub fn new(settings: SsoSettings) -> Self {
        let http = openidconnect::reqwest::Client::builder()
            // Following redirects would let a provider's answer send requests anywhere.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .build()
            .unwrap_or_default();
        Sso {
            settings,
            http,
            metadata: Mutex::new(HashMap::new()),
        }
    }

    pub fn providers(&self) -> Vec<ProviderInfo> {
        self.settings
            .providers
            .iter()
            .map(|p| ProviderInfo {
                id: p.id.clone(),
                name: p.name.clone(),
                kind: if p.oauth2.is_some() { "oauth2" } else { "oidc" },
            })
            .collect()
    }

    pub(crate) fn provider(&self, id: &str) -> Result<&SsoProvider, Error> {
        self.settings
            .providers
            .iter()
            .find(|p| p.id == id)
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::NotFound,
                    format!("no single sign-on provider `{id}`"),
                )
            })
    }

    /// The callback URL of `provider`, on the public URL or the request's host.
    fn callback(&self, provider: &str, host: Option<&str>) -> Result<RedirectUrl, Error> {
        let base = match (&self.settings.public_url, host) {
            (Some(url), _) => url.trim_end_matches('/').to_string(),
            (None, Some(host)) => format!("http://{host}"),
            (None, None) => {
                return Err(Error::invalid_input(
                    "set auth.sso.public_url: the request names no host to call back to",
                ));
            }
        };
        RedirectUrl::new(format!("{base}/api/v1/auth/sso/{provider}/callback"))
            .map_err(|e| Error::invalid_input(format!("the callback URL is not valid: {e}")))
    }

    /// Checks that `redirect_to` stays on Gatehouse or a configured UI origin.
    pub fn check_redirect(&self, redirect_to: &str) -> Result<(), Error> {
        let refused = || {
            Error::invalid_input(
                "redirect_to must be a path on this server or an origin in auth.sso.redirect_origins",
            )
        };
        if redirect_to.starts_with('/') {
            // `//host` and `/\host` are other origins to a browser.
            let second = redirect_to.as_bytes().get(1).copied();
            if matches!(second, Some(b'/') | Some(b'\\')) || redirect_to.contains(['\r', '\n']) {
                return Err(refused());
            }
            return Ok(());
        }
        let Ok(url) = openidconnect::url::Url::parse(redirect_to) else {
            return Err(refused());
        };
        let origin = url.origin().ascii_serialization();
        let own = self
            .settings
            .public_url
            .as_deref()
            .and_then(|u| openidconnect::url::Url::parse(u).ok())
            .map(|u| u.origin().ascii_serialization());
        let allowed = own.as_deref() == Some(origin.as_str())
            || self
                .settings
                .redirect_origins
                .iter()
                .any(|o| o.trim_end_matches('/') == origin);
        if allowed { Ok(()) } else { Err(refused()) }
    }

    async fn metadata(
        &self,
        provider: &SsoProvider,
        fresh: bool,
    ) -> Result<CoreProviderMetadata, Error> {
        if !fresh
            && let Some((metadata, at)) = self.lock().get(&provider.id)
            && at.elapsed() < METADATA_TTL
        {
            return Ok(metadata.clone());
        }
        let issuer = IssuerUrl::new(provider.issuer.clone())
            .map_err(|e| Error::invalid_input(format!("issuer of `{}`: {e}", provider.id)))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| unavailable(provider, "discovery", &e))?;
        self.lock()
            .insert(provider.id.clone(), (metadata.clone(), Instant::now()));
        Ok(metadata)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (CoreProviderMetadata, Instant)>> {
        // A panic while holding the lock leaves a usable map behind.
        self.metadata.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a sign-in: keeps its state, nonce and PKCE verifier, and gives
    /// the provider's authorization URL to send the browser to.
    pub async fn start(
        &self,
        accounts: &AccountService,
        provider_id: &str,
        redirect_to: Option<String>,
        mode: &str,
        host: Option<&str>,
    ) -> Result<String, Error> {
        let provider = self.provider(provider_id)?;
        if let Some(to) = &redirect_to {
            self.check_redirect(to)?;
        }
        let callback = self.callback(provider_id, host)?;
        let (url, state, nonce, verifier) = match &provider.oauth2 {
            Some(endpoints) => plain::authorize(provider, endpoints, callback)?,
            None => {
                let client = client_of(provider, self.metadata(provider, false).await?)
                    .set_redirect_uri(callback);
                let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
                let mut request = client.authorize_url(
                    AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                    CsrfToken::new_random,
                    Nonce::new_random,
                );
                for scope in &provider.scopes {
                    request = request.add_scope(Scope::new(scope.clone()));
                }
                let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
                let nonce = nonce.secret().clone();
                (
                    url.to_string(),
                    state.secret().clone(),
                    nonce,
                    verifier.secret().clone(),
                )
            }
        };
        let flow = SsoFlow {
            provider: provider_id.to_string(),
            nonce,
            pkce_verifier: verifier,
            redirect_to,
            mode: mode.to_string(),
            expires_at_ms: 0,
        };
        accounts.start_sso_flow(&state, flow).await?;
        Ok(url)
    }

    /// Finishes a sign-in at the callback: the flow `state` names (once),
    /// the code exchanged, the ID token validated, then core signs the person in.
    pub async fn finish(
        &self,
        accounts: &AccountService,
        provider_id: &str,
        answer: Answer<'_>,
        host: Option<&str>,
        client_info: &ClientInfo,
    ) -> Result<Finished, Error> {
        let Answer { code, state, iss } = answer;
        let provider = self.provider(provider_id)?;
        // RFC 9207: an answer naming its issuer must name this provider's
        // (the mix-up defence); plain OAuth2 providers have none to name.
        if let Some(iss) = iss
            && provider.oauth2.is_none()
            && iss.trim_end_matches('/') != provider.issuer.trim_end_matches('/')
        {
            return Err(Error::new(
                ErrorCode::Unauthenticated,
                "the answer names another issuer than this provider (RFC 9207)",
            ));
        }
        let flow = accounts.take_sso_flow(provider_id, state).await?;
        let callback = self.callback(provider_id, host)?;
        let profile = match &provider.oauth2 {
            Some(endpoints) => {
                plain::profile(
                    &self.http,
                    provider,
                    endpoints,
                    callback,
                    code,
                    &flow.pkce_verifier,
                )
                .await?
            }
            None => self.oidc_profile(provider, callback, code, &flow).await?,
        };
        let kind = match flow.mode.as_str() {
            "token" => None,
            "cli" => Some(SessionKind::Cli),
            _ => Some(SessionKind::Web),
        };
        let (user, signed_in) = accounts
            .sso_sign_in(&provider.rules, profile, kind, client_info)
            .await?;
        Ok(Finished {
            user,
            signed_in,
            redirect_to: flow.redirect_to,
        })
    }
}

impl Sso {
    /// The OpenID Connect half of a callback: the code exchanged with the
    /// PKCE verifier, the ID token validated, groups from it or userinfo.
    async fn oidc_profile(
        &self,
        provider: &SsoProvider,
        callback: RedirectUrl,
        code: &str,
        flow: &SsoFlow,
    ) -> Result<SsoProfile, Error> {
        let client =
            client_of(provider, self.metadata(provider, false).await?).set_redirect_uri(callback);
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| unavailable(provider, "the token endpoint", &e))?
            .set_pkce_verifier(PkceCodeVerifier::new(flow.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| refused(provider, format!("the code exchange failed: {e}")))?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| refused(provider, "the provider gave no ID token".into()))?;
        let nonce = Nonce::new(flow.nonce.clone());
        let verified = {
            let verifier = client
                .id_token_verifier()
                .set_issue_time_verifier_fn(issued_in_the_past);
            id_token.claims(&verifier, &nonce).cloned()
        };
        let claims = match verified {
            Ok(claims) => claims,
            // The provider may have rotated its keys: once more with fresh ones.
            Err(first) => {
                let client = client_of(provider, self.metadata(provider, true).await?);
                let verifier = client
                    .id_token_verifier()
                    .set_issue_time_verifier_fn(issued_in_the_past);
                id_token
                    .claims(&verifier, &nonce)
                    .cloned()
                    .map_err(|_| refused(provider, format!("the ID token is not valid: {first}")))?
            }
        };
        // The signature is verified: the raw payload may be read for the
        // groups claim, whose name is configured.
        let raw = payload(&id_token.to_string());
        let mut profile = SsoProfile {
            subject: claims.subject().as_str().to_string(),
            email: claims.email().map(|e| e.as_str().to_string()),
            email_verified: claims.email_verified().unwrap_or(false),
            name: claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.as_str().to_string()),
            groups: groups(raw.as_ref(), &provider.groups_claim).unwrap_or_default(),
        };
        let in_token = raw
            .as_ref()
            .is_some_and(|r| r.get(&provider.groups_claim).is_some());
        if (!in_token || profile.email.is_none())
            && let Some(url) = client.user_info_url()
        {
            let info = self
                .userinfo(provider, url.as_str(), tokens.access_token().secret())
                .await?;
            // Userinfo speaks for the same subject only (OpenID Connect Core §5.3.2).
            if info.get("sub").and_then(Value::as_str) == Some(profile.subject.as_str()) {
                if !in_token {
                    profile.groups =
                        groups(Some(&info), &provider.groups_claim).unwrap_or_default();
                }
                if profile.email.is_none() {
                    profile.email = info
                        .get("email")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    profile.email_verified = info
                        .get("email_verified")
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                }
            }
        }
        Ok(profile)
    }

    /// The userinfo answer for `access_token`, as JSON.
    async fn userinfo(
        &self,
        provider: &SsoProvider,
        url: &str,
        access_token: &str,
    ) -> Result<Value, Error> {
        read_json(self.http.get(url).bearer_auth(access_token), provider).await
    }
}

/// Sends `request` to `provider` and reads its JSON answer, at most
/// [`USERINFO_LIMIT`] bytes.
async fn read_json(
    request: openidconnect::reqwest::RequestBuilder,
    provider: &SsoProvider,
) -> Result<Value, Error> {
    let mut answer = request
        .send()
        .await
        .map_err(|e| unavailable(provider, "userinfo", &e))?;
    if !answer.status().is_success() {
        let status = answer.status();
        return Err(unavailable(
            provider,
            "userinfo",
            &format!("answered {status}"),
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = answer
        .chunk()
        .await
        .map_err(|e| unavailable(provider, "userinfo", &e))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > USERINFO_LIMIT {
            return Err(unavailable(
                provider,
                "userinfo",
                &"the answer is too large",
            ));
        }
    }
    serde_json::from_slice(&body).map_err(|e| unavailable(provider, "userinfo", &e))
}

/// The crate's client for `provider`, on its discovered metadata.
fn client_of(
    provider: &SsoProvider,
    metadata: CoreProviderMetadata,
) -> CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
> {
    CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(provider.client_id.clone()),
        provider.client_secret.clone().map(ClientSecret::new),
    )
}

/// An ID token issued more than a minute in the future is refused.
fn issued_in_the_past(iat: chrono::DateTime<chrono::Utc>) -> Result<(), String> {
    if iat > chrono::Utc::now() + chrono::Duration::seconds(60) {
        return Err(format!("issued in the future ({iat})"));
    }
    Ok(())
}

/// The JSON payload of a compact JWS.
fn payload(jwt: &str) -> Option<Value> {
    use base64::Engine as _;
    let part = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The groups under `claim`: a list of names, or one name.
fn groups(claims: Option<&Value>, claim: &str) -> Option<Vec<String>> {
    match claims?.get(claim)? {
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        ),
        Value::String(one) => Some(vec![one.clone()]),
        _ => None,
    }
}

fn unavailable(provider: &SsoProvider, what: &str, e: &dyn std::fmt::Display) -> Error {
    Error::new(
        ErrorCode::Unavailable,
        format!(
            "single sign-on provider `{}`: {what} failed: {e}",
            provider.id
        ),
    )
}

fn refused(provider: &SsoProvider, why: String) -> Error {
    tracing::warn!(provider = %provider.id, reason = %why, "single sign-on refused");
    Error::new(
        ErrorCode::Unauthenticated,
        format!("single sign-on through `{}` failed: {why}", provider.id),
    )
}
