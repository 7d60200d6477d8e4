//! The token payload mapped into [`Claims`].

use super::*;

/// The normalised claims of a token payload. Checks nothing about the token itself.
pub(super) fn claims_from_payload(payload: &Map<String, Value>) -> Result<Claims, Error> {
    let outer_type = str_claim(payload, "x-ms-attestation-type")?;
    let (tee_claims, nested) = match payload.get("x-ms-isolation-tee") {
        Some(Value::Object(inner)) => (inner, true),
        Some(_) => {
            return Err(Error::malformed(
                WHAT_CLAIMS,
                "`x-ms-isolation-tee` is not an object",
            ));
        }
        None => (payload, false),
    };
    let tee_type = str_claim(tee_claims, "x-ms-attestation-type")?;
    let mut claims = match tee_type {
        "sgx" => sgx_claims(tee_claims)?,
        "sevsnpvm" => snp_claims(tee_claims)?,
        other => {
            return Err(Error::Unsupported {
                what: "MAA attestation type",
                got: other.to_owned(),
            });
        }
    };
    if nested {
        claims
            .extra
            .insert("attestation_type".to_owned(), outer_type.to_owned());
        opt_str_extra(
            &mut claims,
            tee_claims,
            "x-ms-compliance-status",
            "compliance_status",
        )?;
    }
    opt_str_extra(&mut claims, payload, "iss", "issuer")?;
    opt_str_extra(&mut claims, payload, "x-ms-policy-hash", "policy_hash")?;
    opt_str_extra(&mut claims, payload, "x-ms-ver", "token_version")?;
    Ok(claims)
}

pub(super) fn sgx_claims(m: &Map<String, Value>) -> Result<Claims, Error> {
    let mut claims = Claims::new(
        Tee::Sgx,
        EvidenceFormat::MaaToken,
        hex_claim(m, "x-ms-sgx-mrenclave", Some(32))?,
        hex_claim(m, "x-ms-sgx-report-data", Some(64))?,
    );
    claims.signer = Some(hex_claim(m, "x-ms-sgx-mrsigner", Some(32))?);
    claims.product_id = Some(int_claim(m, "x-ms-sgx-product-id")?);
    claims.svn = Some(int_claim(m, "x-ms-sgx-svn")?);
    claims.debug = bool_claim(m, "x-ms-sgx-is-debuggable")?;
    claims.tcb_status = TcbStatus::UpToDate;
    if m.contains_key("x-ms-sgx-ehd") {
        let ehd = URL_SAFE_LENIENT
            .decode(str_claim(m, "x-ms-sgx-ehd")?)
            .map_err(|e| {
                Error::malformed(WHAT_CLAIMS, format!("`x-ms-sgx-ehd` is not base64url: {e}"))
            })?;
        claims.extra.insert("ehd".to_owned(), hex::encode(ehd));
    }
    opt_str_extra(&mut claims, m, "x-ms-sgx-tcbidentifier", "tcb_identifier")?;
    if let Some(Value::Object(collateral)) = m.get("x-ms-sgx-collateral") {
        opt_hex_extra(&mut claims, collateral, "quotehash", "quote_hash")?;
    }
    Ok(claims)
}

pub(super) fn snp_claims(m: &Map<String, Value>) -> Result<Claims, Error> {
    let mut claims = Claims::new(
        Tee::SevSnp,
        EvidenceFormat::MaaToken,
        hex_claim(m, "x-ms-sevsnpvm-launchmeasurement", Some(48))?,
        hex_claim(m, "x-ms-sevsnpvm-reportdata", Some(64))?,
    );
    claims.debug = bool_claim(m, "x-ms-sevsnpvm-is-debuggable")?;
    claims.tcb_status = TcbStatus::NotReported;
    if m.contains_key("x-ms-sevsnpvm-authorkeydigest") {
        claims.signer = Some(hex_claim(m, "x-ms-sevsnpvm-authorkeydigest", Some(48))?);
    }
    if m.contains_key("x-ms-sevsnpvm-guestsvn") {
        claims.svn = Some(int_claim(m, "x-ms-sevsnpvm-guestsvn")?);
    }
    for (claim, key) in [
        ("x-ms-sevsnpvm-hostdata", "host_data"),
        ("x-ms-sevsnpvm-idkeydigest", "id_key_digest"),
        ("x-ms-sevsnpvm-familyId", "family_id"),
        ("x-ms-sevsnpvm-imageId", "image_id"),
        ("x-ms-sevsnpvm-reportid", "report_id"),
    ] {
        opt_hex_extra(&mut claims, m, claim, key)?;
    }
    for (claim, key) in [
        ("x-ms-sevsnpvm-vmpl", "vmpl"),
        ("x-ms-sevsnpvm-guestsvn", "guest_svn"),
        ("x-ms-sevsnpvm-microcode-svn", "microcode_svn"),
        ("x-ms-sevsnpvm-snpfw-svn", "snpfw_svn"),
        ("x-ms-sevsnpvm-bootloader-svn", "bootloader_svn"),
        ("x-ms-sevsnpvm-tee-svn", "tee_svn"),
    ] {
        if m.contains_key(claim) {
            let v: u64 = int_claim(m, claim)?;
            claims.extra.insert(key.to_owned(), v.to_string());
        }
    }
    for (claim, key) in [
        ("x-ms-sevsnpvm-smt-allowed", "smt_allowed"),
        ("x-ms-sevsnpvm-migration-allowed", "migration_allowed"),
    ] {
        if m.contains_key(claim) {
            claims
                .extra
                .insert(key.to_owned(), bool_claim(m, claim)?.to_string());
        }
    }
    claims.snp = snp_details(m, claims.debug)?;
    Ok(claims)
}

/// The typed SEV-SNP details, when the token has every part: the four TCB SVNs, the VMPL and the
/// SMT and migration flags. Without them policies that need them refuse the token.
pub(super) fn snp_details(
    m: &Map<String, Value>,
    debug: bool,
) -> Result<Option<SnpDetails>, Error> {
    const NEEDED: [&str; 7] = [
        "x-ms-sevsnpvm-bootloader-svn",
        "x-ms-sevsnpvm-tee-svn",
        "x-ms-sevsnpvm-snpfw-svn",
        "x-ms-sevsnpvm-microcode-svn",
        "x-ms-sevsnpvm-vmpl",
        "x-ms-sevsnpvm-smt-allowed",
        "x-ms-sevsnpvm-migration-allowed",
    ];
    if !NEEDED.iter().all(|c| m.contains_key(*c)) {
        return Ok(None);
    }
    let spl = |name: &str| int_claim::<u8>(m, name);
    let tcb = SnpTcb::new(
        spl("x-ms-sevsnpvm-bootloader-svn")?,
        spl("x-ms-sevsnpvm-tee-svn")?,
        spl("x-ms-sevsnpvm-snpfw-svn")?,
        spl("x-ms-sevsnpvm-microcode-svn")?,
    );
    let vmpl: u32 = int_claim(m, "x-ms-sevsnpvm-vmpl")?;
    let policy = SnpGuestPolicy::from_flags(
        debug,
        bool_claim(m, "x-ms-sevsnpvm-smt-allowed")?,
        bool_claim(m, "x-ms-sevsnpvm-migration-allowed")?,
    );
    Ok(Some(SnpDetails::new(tcb, vmpl, policy)))
}

pub(super) fn missing(name: &str) -> Error {
    Error::malformed(WHAT_CLAIMS, format!("`{name}` is missing"))
}

pub(super) fn str_claim<'m>(m: &'m Map<String, Value>, name: &str) -> Result<&'m str, Error> {
    match m.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Error::malformed(
            WHAT_CLAIMS,
            format!("`{name}` is not a string"),
        )),
        None => Err(missing(name)),
    }
}

pub(super) fn bool_claim(m: &Map<String, Value>, name: &str) -> Result<bool, Error> {
    match m.get(name) {
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(Error::malformed(
            WHAT_CLAIMS,
            format!("`{name}` is not a boolean"),
        )),
        None => Err(missing(name)),
    }
}

pub(super) fn int_claim<T: TryFrom<u64>>(m: &Map<String, Value>, name: &str) -> Result<T, Error> {
    let value = m.get(name).ok_or_else(|| missing(name))?;
    value
        .as_u64()
        .and_then(|v| T::try_from(v).ok())
        .ok_or_else(|| {
            Error::malformed(
                WHAT_CLAIMS,
                format!("`{name}` is not an integer in range: {value}"),
            )
        })
}

pub(super) fn hex_claim(
    m: &Map<String, Value>,
    name: &str,
    len: Option<usize>,
) -> Result<Vec<u8>, Error> {
    let bytes = hex::decode(str_claim(m, name)?)
        .map_err(|e| Error::malformed(WHAT_CLAIMS, format!("`{name}` is not hex: {e}")))?;
    match len {
        Some(len) if bytes.len() != len => Err(Error::malformed(
            WHAT_CLAIMS,
            format!("`{name}` is {} bytes, expected {len}", bytes.len()),
        )),
        _ => Ok(bytes),
    }
}

/// An integer date (seconds since the Unix epoch), if present.
pub(super) fn numeric_date(m: &Map<String, Value>, name: &str) -> Result<Option<u64>, Error> {
    let Some(value) = m.get(name) else {
        return Ok(None);
    };
    match value.as_u64() {
        Some(secs) if secs <= MAX_NUMERIC_DATE => Ok(Some(secs)),
        _ => Err(Error::malformed(
            WHAT_CLAIMS,
            format!("`{name}` is not an integer date up to year 9999: {value}"),
        )),
    }
}

pub(super) fn opt_str_extra(
    claims: &mut Claims,
    m: &Map<String, Value>,
    name: &str,
    key: &str,
) -> Result<(), Error> {
    if m.contains_key(name) {
        let v = str_claim(m, name)?;
        claims.extra.insert(key.to_owned(), v.to_owned());
    }
    Ok(())
}

pub(super) fn opt_hex_extra(
    claims: &mut Claims,
    m: &Map<String, Value>,
    name: &str,
    key: &str,
) -> Result<(), Error> {
    if m.contains_key(name) {
        let v = hex_claim(m, name, None)?;
        claims.extra.insert(key.to_owned(), hex::encode(v));
    }
    Ok(())
}
