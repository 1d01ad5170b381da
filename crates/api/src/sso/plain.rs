//! Plain OAuth2 single sign-on, for providers without OpenID Connect
//! (OpenShift, GitHub): authorization code with PKCE through the `oauth2`
//! crate, then who signed in is read from the provider's userinfo URL with
//! the access token, at the JSON pointers configuration gives. There is no ID
//! token to validate: the userinfo answer, fetched by Gatehouse itself over
//! the configured URL, is the provider's word.

use gatehouse_core::Error;
use gatehouse_core::accounts::sso::SsoProfile;
use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse as _, TokenUrl,
};
use serde_json::Value;

use super::{SsoProvider, groups, refused, unavailable};

/// A plain OAuth2 provider's URLs, and where its userinfo answer holds what
/// Gatehouse needs (RFC 6901 JSON pointers, e.g. `/metadata/uid`).
#[derive(Debug, Clone)]
pub struct OAuth2Endpoints {
    pub authorization_url: String,
    pub token_url: String,
    pub userinfo_url: String,
    /// The stable subject (a string or a number).
    pub subject: String,
    pub email: Option<String>,
    /// A boolean saying the email is verified; unset: never verified.
    pub email_verified: Option<String>,
    pub name: Option<String>,
    /// A list of group names (or one name).
    pub groups: Option<String>,
}

fn client(
    provider: &SsoProvider,
    endpoints: &OAuth2Endpoints,
    callback: RedirectUrl,
) -> Result<
    BasicClient<
        oauth2::EndpointSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointSet,
    >,
    Error,
> {
    let url = |what: &str, e: url_error::E| {
        Error::invalid_input(format!("{what} of `{}` is not a URL: {e}", provider.id))
    };
    let mut client = BasicClient::new(ClientId::new(provider.client_id.clone()))
        .set_auth_uri(
            AuthUrl::new(endpoints.authorization_url.clone())
                .map_err(|e| url("authorization_url", e))?,
        )
        .set_token_uri(TokenUrl::new(endpoints.token_url.clone()).map_err(|e| url("token_url", e))?)
        .set_redirect_uri(callback);
    if let Some(secret) = &provider.client_secret {
        client = client.set_client_secret(ClientSecret::new(secret.clone()));
    }
    Ok(client)
}

mod url_error {
    pub type E = oauth2::url::ParseError;
}

/// The authorization URL, and the state, (no) nonce and PKCE verifier to keep.
pub(super) fn authorize(
    provider: &SsoProvider,
    endpoints: &OAuth2Endpoints,
    callback: RedirectUrl,
) -> Result<(String, String, String, String), Error> {
    let client = client(provider, endpoints, callback)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client.authorize_url(CsrfToken::new_random);
    for scope in &provider.scopes {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    let (url, state) = request.set_pkce_challenge(challenge).url();
    Ok((
        url.to_string(),
        state.secret().clone(),
        String::new(),
        verifier.secret().clone(),
    ))
}

/// Exchanges the code and reads who signed in from the userinfo URL.
pub(super) async fn profile(
    http: &oauth2::reqwest::Client,
    provider: &SsoProvider,
    endpoints: &OAuth2Endpoints,
    callback: RedirectUrl,
    code: &str,
    verifier: &str,
) -> Result<SsoProfile, Error> {
    let client = client(provider, endpoints, callback)?;
    let tokens = client
        .exchange_code(AuthorizationCode::new(code.to_string()))
        .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_string()))
        .request_async(http)
        .await
        .map_err(|e| refused(provider, format!("the code exchange failed: {e}")))?;
    let info = super::read_json(
        http.get(&endpoints.userinfo_url)
            .bearer_auth(tokens.access_token().secret())
            .header("accept", "application/json")
            // GitHub refuses requests without one.
            .header("user-agent", "gatehouse"),
        provider,
    )
    .await?;
    let text = |pointer: &Option<String>| {
        pointer
            .as_deref()
            .and_then(|p| info.pointer(p))
            .and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
    };
    let subject = text(&Some(endpoints.subject.clone())).ok_or_else(|| {
        unavailable(
            provider,
            "userinfo",
            &format!("no subject at {}", endpoints.subject),
        )
    })?;
    let groups = endpoints
        .groups
        .as_deref()
        .and_then(|p| info.pointer(p))
        .and_then(|v| groups(Some(&serde_json::json!({ "g": v })), "g"))
        .unwrap_or_default();
    Ok(SsoProfile {
        subject,
        email: text(&endpoints.email),
        email_verified: endpoints
            .email_verified
            .as_deref()
            .and_then(|p| info.pointer(p))
            .and_then(Value::as_bool)
            .unwrap_or(false),
        name: text(&endpoints.name),
        groups,
    })
}
