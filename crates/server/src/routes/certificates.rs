//! `/v1/certificates…`: CA certificates a team uploads (PEM or DER, checked
//! to be one CA certificate) and that the browsers of sessions naming them
//! in `browser.certificates` trust.

use anchorage_core::{check_certificate_name, CertificateId, Timestamp};
use anchorage_store::{CertificateRecord, StoreError};
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Path, State};
use axum::Json;
use base64::Engine;

use super::extract::unreadable_multipart;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::wire::{CertificateItem, Data, Success};

/// Largest certificate file.
const MAX_CERTIFICATE_BYTES: usize = 64 * 1024;
/// Longest description, in characters.
const MAX_DESCRIPTION_CHARS: usize = 1000;

fn item(certificate: CertificateRecord) -> CertificateItem {
    CertificateItem {
        id: certificate.id.to_string(),
        name: certificate.name,
        description: certificate.description,
        created_at: certificate.created_at.to_string(),
    }
}

/// The certificate of a `.pem`, `.crt`, `.cer` or `.der` file, as PEM, if it
/// is one CA certificate.
fn ca_pem(bytes: &[u8]) -> Result<String, String> {
    let der = if bytes.windows(10).any(|window| window == b"-----BEGIN") {
        let (_, pem) = x509_parser::pem::parse_x509_pem(bytes)
            .map_err(|_| "file is not a PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned())?;
        if pem.label != "CERTIFICATE" {
            return Err(format!("file holds a PEM {:?}, not a CERTIFICATE", pem.label));
        }
        pem.contents
    } else {
        bytes.to_vec()
    };
    let (rest, certificate) = x509_parser::parse_x509_certificate(&der)
        .map_err(|error| format!("file is not an X.509 certificate (PEM or DER): {error}"))?;
    if !rest.is_empty() {
        return Err("file holds more than one certificate; upload each CA on its own".to_owned());
    }
    let is_ca = certificate
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|constraints| constraints.value.ca);
    if !is_ca {
        return Err("file is not a CA certificate (its basicConstraints must say CA:TRUE)".to_owned());
    }
    let body = base64::engine::general_purpose::STANDARD.encode(&der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|chunk| std::str::from_utf8(chunk).unwrap_or_default())
        .collect();
    Ok(format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    ))
}

/// `POST /v1/certificates` (multipart: `file`, `name`, `description`).
#[utoipa::path(
    operation_id = "create_certificate",
    post,
    path = "/v1/certificates",
    tag = "certificates",
    summary = "Upload a CA certificate (PEM or DER) that sessions naming it in browser.certificates trust",
    security(("api_key" = [])),
    responses((status = 200, description = "Checked and kept", body = Data<CertificateItem>))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<Data<CertificateItem>>, ApiError> {
    let mut multipart = multipart.map_err(|rejection| {
        ApiError::BadRequest(format!(
            "the body must be multipart/form-data with `name` and `file` parts: {rejection}"
        ))
    })?;
    let (mut name, mut description, mut file) = (None, None, None);
    while let Some(mut field) = multipart.next_field().await.map_err(unreadable_multipart)? {
        match field.name() {
            Some("name") => name = Some(field.text().await.map_err(unreadable_multipart)?),
            Some("description") => description = Some(field.text().await.map_err(unreadable_multipart)?),
            Some("file") => {
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(unreadable_multipart)? {
                    bytes.extend_from_slice(&chunk);
                    if bytes.len() > MAX_CERTIFICATE_BYTES {
                        return Err(ApiError::PayloadTooLarge(MAX_CERTIFICATE_BYTES));
                    }
                }
                file = Some(bytes);
            }
            _ => {}
        }
    }
    let name = name.ok_or_else(|| ApiError::BadRequest("name is required".to_owned()))?;
    check_certificate_name(&name, "name").map_err(|error| ApiError::BadRequest(error.0))?;
    if description
        .as_ref()
        .is_some_and(|text| text.chars().count() > MAX_DESCRIPTION_CHARS)
    {
        return Err(ApiError::BadRequest(format!(
            "description must be at most {MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    let file =
        file.ok_or_else(|| ApiError::BadRequest("file is required: the CA certificate, PEM or DER".to_owned()))?;
    let pem = ca_pem(&file).map_err(ApiError::BadRequest)?;
    let certificate = CertificateRecord {
        id: CertificateId::new_random(),
        team_id: caller.0.team_id,
        name,
        description: description.filter(|text| !text.is_empty()),
        pem,
        created_at: Timestamp::now(),
    };
    match state.store.create_certificate(&certificate).await {
        Ok(()) => Ok(Data::of(item(certificate))),
        Err(StoreError::AlreadyExists(_)) => Err(ApiError::Conflict(format!(
            "your team already has a certificate named {:?}",
            certificate.name
        ))),
        Err(error) => Err(error.into()),
    }
}

/// `GET /v1/certificates`.
#[utoipa::path(
    operation_id = "list_certificates",
    get,
    path = "/v1/certificates",
    tag = "certificates",
    summary = "The team's CA certificates",
    security(("api_key" = [])),
    responses((status = 200, description = "Oldest first", body = Data<Vec<CertificateItem>>))
)]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Data<Vec<CertificateItem>>>, ApiError> {
    let items = state
        .store
        .list_certificates(Some(caller.0.team_id))
        .await?
        .into_iter()
        .map(item)
        .collect();
    Ok(Data::of(items))
}

/// `DELETE /v1/certificates/{name}`.
#[utoipa::path(
    operation_id = "delete_certificate",
    delete,
    path = "/v1/certificates/{name}",
    tag = "certificates",
    summary = "Delete a CA certificate (running sessions keep trusting it)",
    params(("name" = String, Path, description = "The certificate's name")),
    security(("api_key" = [])),
    responses((status = 200, description = "Deleted", body = Data<Success>))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Data<Success>>, ApiError> {
    state
        .store
        .delete_certificate(caller.0.team_id, &name)
        .await?
        .ok_or_else(|| ApiError::NotFound("Certificate not found".to_owned()))?;
    Ok(Data::of(Success { status: "success" }))
}
