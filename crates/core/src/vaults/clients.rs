//! Service clients and their certificates: Ed25519 public keys a client signs
//! its assertions with, generated here (the private key shown once, or kept
//! sealed) or brought by the client, listed and revoked.

use super::*;

impl VaultService {
    pub async fn create_client(
        &self,
        actor: &User,
        org_id: Id,
        spec: VaultSpec,
        client: &ClientInfo,
    ) -> Result<ServiceClient> {
        let name = parse_name(spec.name.as_deref().unwrap_or_default(), "client")?;
        let description = parse_description(spec.description.as_deref())?;
        let service = ServiceClient {
            id: self.env.ids.next_id(),
            org_id,
            name,
            description,
            created_at: self.env.clock.now(),
        };
        self.audited(
            |tx| {
                let service = &service;
                async move {
                    load_access(&tx, actor, org_id)
                        .await?
                        .require(OrgAction::ManageKeys)?;
                    keyspace::client_by_id(service.id)
                        .put(&tx, &ClientRef { org_id })
                        .await?;
                    keyspace::service_client(org_id, service.id)
                        .put(&tx, service)
                        .await
                }
            },
            |_| {
                self.event(
                    actor,
                    client,
                    "clients.create",
                    org_id,
                    ("client", service.id.to_string()),
                    json!({"name": service.name}),
                )
            },
        )
        .await?;
        Ok(service)
    }

    pub async fn list_clients(&self, actor: &User, org_id: Id) -> Result<Vec<ServiceClient>> {
        read_in_org(&self.store, actor, org_id, |tx| async move {
            read_all::<ServiceClient>(&tx, &keyspace::service_clients(org_id)).await
        })
        .await
    }

    pub async fn get_client(&self, actor: &User, org_id: Id, id: Id) -> Result<ServiceClient> {
        read_in_org(&self.store, actor, org_id, |tx| async move {
            get_client(&tx, org_id, id).await
        })
        .await
    }

    /// Deletes a client with its certificates and vault grants: its assertions
    /// stop working at once, its refresh tokens at their next use.
    pub async fn delete_client(
        &self,
        actor: &User,
        org_id: Id,
        id: Id,
        client: &ClientInfo,
    ) -> Result<()> {
        self.audited(
            |tx| async move {
                load_access(&tx, actor, org_id)
                    .await?
                    .require(OrgAction::ManageKeys)?;
                get_client(&tx, org_id, id).await?;
                let now = self.env.clock.now();
                forget_subject(&tx, org_id, SubjectKind::Client, id, now).await?;
                clear_client(&tx, org_id, id).await
            },
            |_| {
                self.event(
                    actor,
                    client,
                    "clients.delete",
                    org_id,
                    ("client", id.to_string()),
                    json!({}),
                )
            },
        )
        .await?;
        Ok(())
    }

    /// Adds a certificate. Returns it and, when Gatehouse generated the key
    /// pair, the private key as PKCS#8 PEM — shown this once.
    pub async fn add_certificate(
        &self,
        actor: &User,
        org_id: Id,
        client_id: Id,
        spec: CertificateSpec,
        client: &ClientInfo,
    ) -> Result<(Certificate, Option<String>)> {
        let kid = format!("ck_{}", self.env.random.alphanumeric(22));
        let (public, private_pem, sealed) = match spec.public_key.as_deref() {
            Some(text) => {
                if spec.keep_private_key {
                    return Err(Error::invalid_input(
                        "keep_private_key applies only to key pairs Gatehouse generates",
                    ));
                }
                (parse_public_key(text)?, None, None)
            }
            None => {
                let mut seed = [0u8; 32];
                self.env.random.fill(&mut seed);
                let key = ed25519_dalek::SigningKey::from_bytes(&seed);
                let pem = private_key_pem(seed)?;
                let sealed = if spec.keep_private_key {
                    Some(self.keys.seal(
                        self.env.random.as_ref(),
                        &seed,
                        &Certificate::context(&kid),
                    )?)
                } else {
                    None
                };
                (key.verifying_key(), Some(pem), sealed)
            }
        };
        let cert = Certificate {
            kid: kid.clone(),
            client_id,
            org_id,
            public_key: jwt::encode_public_key(&public),
            private_key: sealed,
            created_at: self.env.clock.now(),
            revoked_at: None,
        };
        self.audited(
            |tx| {
                let cert = &cert;
                async move {
                    load_access(&tx, actor, org_id)
                        .await?
                        .require(OrgAction::ManageKeys)?;
                    get_client(&tx, org_id, client_id).await?;
                    keyspace::certificate_by_kid(&cert.kid)
                        .put(&tx, &CertificateRef { client_id, org_id })
                        .await?;
                    keyspace::certificate(client_id, &cert.kid)
                        .put(&tx, cert)
                        .await
                }
            },
            |_| {
                let details = json!({
                    "kid": kid,
                    "generated": private_pem.is_some(),
                    "kept": cert.private_key.is_some(),
                });
                let target = ("client", client_id.to_string());
                self.event(
                    actor,
                    client,
                    "clients.add_certificate",
                    org_id,
                    target,
                    details,
                )
            },
        )
        .await?;
        Ok((cert, private_pem))
    }

    pub async fn list_certificates(
        &self,
        actor: &User,
        org_id: Id,
        client_id: Id,
    ) -> Result<Vec<Certificate>> {
        read_in_org(&self.store, actor, org_id, |tx| async move {
            get_client(&tx, org_id, client_id).await?;
            read_all::<Certificate>(&tx, &keyspace::certificates(client_id)).await
        })
        .await
    }

    /// Revokes a certificate: assertions signed with it are refused from now on.
    pub async fn revoke_certificate(
        &self,
        actor: &User,
        org_id: Id,
        client_id: Id,
        kid: &str,
        client: &ClientInfo,
    ) -> Result<Certificate> {
        let now = self.env.clock.now();
        let cert = self
            .audited(
                |tx| async move {
                    load_access(&tx, actor, org_id)
                        .await?
                        .require(OrgAction::ManageKeys)?;
                    get_client(&tx, org_id, client_id).await?;
                    let key = keyspace::certificate(client_id, kid);
                    let Some(mut cert) = key.get(&tx).await? else {
                        return abort(Error::not_found("certificate"));
                    };
                    if cert.revoked_at.is_none() {
                        cert.revoked_at = Some(now);
                        // The private key, if kept, is of no further use.
                        cert.private_key = None;
                        key.put(&tx, &cert).await?;
                    }
                    Ok(cert)
                },
                |_| {
                    self.event(
                        actor,
                        client,
                        "clients.revoke_certificate",
                        org_id,
                        ("client", client_id.to_string()),
                        json!({"kid": kid}),
                    )
                },
            )
            .await?;
        Ok(cert)
    }

    /// Re-seals kept client private keys with the current key-encryption key.
    pub async fn reseal_all(&self) -> Result<usize> {
        let certs: Vec<(Id, String)> = self
            .store
            .run(|tx| async move {
                let range = keyspace::all_certificates();
                Ok::<_, TxError<Error>>(
                    read_all::<Certificate>(&tx, &range)
                        .await?
                        .into_iter()
                        .filter(|c| c.private_key.is_some())
                        .map(|c| (c.client_id, c.kid))
                        .collect(),
                )
            })
            .await?;
        let mut resealed = 0;
        for (client_id, kid) in certs {
            let keys = &self.keys;
            let random = self.env.random.as_ref();
            let kid = &kid;
            let changed = self
                .store
                .run(|tx| async move {
                    let key = keyspace::certificate(client_id, kid);
                    let Some(mut cert) = key.get(&tx).await? else {
                        return Ok(false);
                    };
                    let Some(sealed) = &cert.private_key else {
                        return Ok(false);
                    };
                    let context = Certificate::context(kid);
                    let Some(resealed) = keys
                        .reseal(random, sealed, &context)
                        .map_err(TxError::Abort)?
                    else {
                        return Ok(false);
                    };
                    cert.private_key = Some(resealed);
                    key.put(&tx, &cert).await?;
                    Ok::<_, TxError<Error>>(true)
                })
                .await?;
            resealed += usize::from(changed);
        }
        Ok(resealed)
    }
}

/// A generated key's private half as PKCS#8 v1 PEM (RFC 8410: the seed
/// alone). A `SigningKey`'s own `to_pkcs8_pem` writes v2 (RFC 5958, the
/// public key appended), which OpenSSL 3 and Python's `cryptography` refuse
/// to read.
fn private_key_pem(seed: [u8; 32]) -> Result<String> {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    let pair = ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: seed,
        public_key: None,
    };
    Ok(pair
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(Error::internal)?
        .to_string())
}
