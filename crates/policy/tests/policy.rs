//! The crate's one integration-test binary: the bundled example policies, end to end, and the
//! published JSON Schema.

// A test binary: a panic is how a check fails, helpers included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cloister_attest::{Claims, EvidenceFormat, Tee};
use cloister_policy::{
    Importer, OwnerKey, Policy, SecretValue, SessionHash, SignedPolicy, authorize_create,
    authorize_import, json_schema, yaml_to_json,
};
use rstest::rstest;
use secrecy::ExposeSecret;
use serde_json::Value;

fn example(name: &str) -> String {
    let path = format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn parse(name: &str) -> Policy {
    Policy::parse(&example(name)).unwrap_or_else(|p| panic!("{}", p.with_source_name(name)))
}

#[rstest]
#[case::sim_demo("sim-demo.yaml")]
#[case::production("production.yaml")]
#[case::exporter("exporter.yaml")]
#[case::importer("importer.yaml")]
fn example_parses_and_matches_the_schema(#[case] name: &str) {
    if cfg!(feature = "rego") || !example(name).contains("rego:") {
        let policy = parse(name);
        assert_eq!(policy.hash(), SessionHash::of(example(name)));
    } else {
        // A build that cannot enforce a Rego rule never accepts a policy that has one.
        let problems = Policy::parse(&example(name)).unwrap_err();
        assert!(
            problems.has(cloister_policy::Rule::RegoUnsupported),
            "{problems}"
        );
    }
    let doc = yaml_to_json(&example(name)).unwrap();
    let schema = json_schema();
    let errors = validate(&schema, &schema, &doc, "");
    assert!(
        errors.is_empty(),
        "{name} does not match the schema:\n{}",
        errors.join("\n")
    );
}

#[test]
fn the_schema_refuses_what_the_parser_refuses() {
    let schema = json_schema();
    let mut doc = yaml_to_json(&example("sim-demo.yaml")).unwrap();
    doc["services"][0]["comand"] = Value::from("/bin/sh");
    doc["security"]["tees"][0] = Value::from("sgz");
    doc["secrets"][0].as_object_mut().unwrap().remove("kind");
    let errors = validate(&schema, &schema, &doc, "").join("\n");
    for needle in [
        "/services/0: unknown property `comand`",
        "/security/tees/0",
        "/secrets/0: missing `kind`",
    ] {
        assert!(errors.contains(needle), "`{needle}` not in:\n{errors}");
    }
}

#[test]
fn sim_demo_end_to_end() {
    // The example's owner key is the published test seed [1; 32].
    let owner = OwnerKey::from_seed(&[1; 32]).unwrap();
    let wire = SignedPolicy::new(example("sim-demo.yaml"))
        .signed_by(&owner)
        .to_json();
    let policy = authorize_create(&SignedPolicy::from_json(&wire).unwrap()).unwrap();

    let mut claims = Claims::new(
        Tee::Sim,
        EvidenceFormat::Sim,
        hex::decode("5f3a9c0e1d2b4a6f8e7d9c0b1a2f3e4d5c6b7a8f9e0d1c2b3a4f5e6d7c8b9a0f").unwrap(),
        vec![0; 64],
    );
    claims.debug = true;
    claims.advisory_ids = vec!["INTEL-SA-00615".into()];
    let driver = policy.appraise("driver", &claims).unwrap();

    let lookup = |name: &str| -> Option<SecretValue> {
        Some(match name {
            "auth_secret" => SecretValue::text("very-secret-auth"),
            "spill_key" | "taxi_column_key" => SecretValue::bytes(vec![0x5a; 32]),
            "driver_cert" => SecretValue::Certificate {
                der: vec![0x30, 0x03, 1, 2, 3],
                issuers: vec![vec![0x30, 0x01, 9]],
                key: secrecy::SecretBox::from(vec![0x77u8; 16].into_boxed_slice()),
            },
            _ => return None,
        })
    };
    let host_args: Vec<String> = ["cloister", "/apps/taxi.sql"].map(String::from).into();
    let resolved = driver.resolve(&host_args, &lookup).unwrap();
    assert_eq!(resolved.args[4].expose_secret(), "/apps/taxi.sql");
    assert_eq!(
        resolved.env["TAXI_COLUMN_KEY"].expose_secret(),
        &"5a".repeat(32)
    );
    assert_eq!(
        resolved.files[2].content.expose_secret(),
        "very-secret-auth"
    );
    assert_eq!(resolved.files[2].mode, 0o400);
    assert!(
        resolved.files[0]
            .content
            .expose_secret()
            .matches("BEGIN CERTIFICATE")
            .count()
            == 2
    );

    // Secrets never appear in Debug of the resolved configuration or the values.
    let debug = format!(
        "{resolved:?} {:?} {:?}",
        lookup("auth_secret"),
        lookup("driver_cert")
    );
    for secret in [
        "very-secret-auth",
        &"5a".repeat(32),
        "WlpaWlpa",
        "d3d3d3",
        "119, 119",
    ] {
        assert!(!debug.contains(secret), "`{secret}` leaked into {debug}");
    }
    assert!(debug.contains("TAXI_COLUMN_KEY"), "names are fine: {debug}");
}

#[cfg(feature = "rego")]
#[test]
fn production_appraisal() {
    use cloister_attest::{DcapDetails, TcbStatus};
    let policy = parse("production.yaml");
    assert_eq!(policy.access().approvals, 2);

    let mut sgx = Claims::new(
        Tee::Sgx,
        EvidenceFormat::DcapQuote,
        vec![0x11; 32],
        vec![0; 64],
    );
    sgx.signer = Some(
        hex::decode("83d719e77deaca1470f6baf62a4d774303c899db69020f9c70ee1dfc08c7ce9e").unwrap(),
    );
    sgx.product_id = Some(7);
    sgx.svn = Some(4);
    sgx.tcb_status = TcbStatus::SwHardeningNeeded;
    sgx.advisory_ids = vec!["INTEL-SA-00615".into()];
    sgx.dcap = Some(DcapDetails::new(17, 17));
    policy.appraise("driver", &sgx).unwrap();
    // Collateral from before the policy's minimum TCB evaluation data number is refused.
    let mut old = sgx.clone();
    old.dcap = Some(DcapDetails::new(16, 17));
    let refusal = policy.appraise("driver", &old).unwrap_err();
    assert_eq!(
        refusal.reasons,
        vec!["security.min_tcb_evaluation_data_number: tcb info 16 below 17"]
    );
    let refusal = policy.appraise("executor", &sgx).unwrap_err();
    assert!(refusal.mentions("product id 7 is not 8"), "{refusal}");

    let mrtd = "9c0b1a2f3e4d5c6b7a8f9e0d1c2b3a4f5e6d7c8b9a0f5f3a9c0e1d2b4a6f8e7d9c0b1a2f3e4d5c6b7a8f9e0d1c2babcd";
    let mut tdx = Claims::new(
        Tee::Tdx,
        EvidenceFormat::DcapQuote,
        hex::decode(mrtd).unwrap(),
        vec![0; 64],
    );
    tdx.tcb_status = TcbStatus::UpToDate;
    tdx.dcap = Some(DcapDetails::new(18, 18));
    tdx.extra.insert(
        "rtmr2".into(),
        "3A4F5E6D7C8B9A0F5F3A9C0E1D2B4A6F8E7D9C0B1A2F3E4D5C6B7A8F9E0D1C2B3A4F5E6D7C8B9A0F5F3A9C0E1D2BABCD".into(),
    );
    tdx.extra.insert("mrconfigid".into(), "00".repeat(48));
    policy.appraise("driver", &tdx).unwrap();

    tdx.extra.insert("mrconfigid".into(), "01".repeat(48));
    let refusal = policy.appraise("driver", &tdx).unwrap_err();
    #[cfg(feature = "rego")]
    assert_eq!(
        refusal.reasons,
        vec!["security.rego: tdx mrconfigid is not the approved one"]
    );
    #[cfg(not(feature = "rego"))]
    let _ = refusal;
}

#[test]
fn exporter_and_importer_examples_agree() {
    let exporter = parse("exporter.yaml");
    let importer = parse("importer.yaml");
    let (local, import) = importer.session_imports().next().unwrap();
    assert_eq!(local, "trips_key");
    // The importer's namespace owners, as the CAS would know them: here its policy's owners.
    let owners = importer
        .access()
        .owners
        .iter()
        .map(|o| o.key.fingerprint())
        .collect();
    let who = Importer::new(&importer, &[], &owners);
    authorize_import(&who, import, &exporter, &exporter.hash()).unwrap_or_else(|e| {
        panic!(
            "{e}: update importer.yaml's session_hash to {}",
            exporter.hash()
        )
    });
}

// ----- a validator for the JSON Schema subset schemars emits -----

/// Check `value` against `schema` (resolving `$ref` in `root`): type, enum, const, properties,
/// required, additionalProperties, items, oneOf, anyOf, allOf, minimum, maximum. Returns one
/// line per violation, `pointer: what`.
fn validate(root: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let Some(s) = schema.as_object() else {
        if schema == &Value::Bool(false) {
            errors.push(format!("{at}: nothing is allowed here"));
        }
        return errors;
    };
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let target = r
            .strip_prefix("#/$defs/")
            .and_then(|name| root["$defs"].get(name))
            .unwrap_or_else(|| panic!("unresolvable $ref {r}"));
        errors.extend(validate(root, target, value, at));
    }
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = types.iter().any(|t| match *t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            _ => false,
        });
        if !ok {
            errors.push(format!("{at}: {value} is not of type {types:?}"));
            return errors;
        }
    }
    if let Some(options) = s.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        errors.push(format!("{at}: {value} is not one of {options:?}"));
    }
    if let Some(c) = s.get("const")
        && c != value
    {
        errors.push(format!("{at}: {value} is not {c}"));
    }
    if let (Some(min), Some(n)) = (s.get("minimum").and_then(Value::as_f64), value.as_f64())
        && n < min
    {
        errors.push(format!("{at}: {n} < {min}"));
    }
    if let (Some(max), Some(n)) = (s.get("maximum").and_then(Value::as_f64), value.as_f64())
        && n > max
    {
        errors.push(format!("{at}: {n} > {max}"));
    }
    if let Some(obj) = value.as_object() {
        let props = s.get("properties").and_then(Value::as_object);
        for req in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let req = req.as_str().unwrap_or_default();
            if !obj.contains_key(req) {
                errors.push(format!("{at}: missing `{req}`"));
            }
        }
        for (k, v) in obj {
            let here = format!("{at}/{k}");
            match props.and_then(|p| p.get(k)) {
                Some(sub) => errors.extend(validate(root, sub, v, &here)),
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        errors.push(format!("{at}: unknown property `{k}`"))
                    }
                    Some(sub @ Value::Object(_)) => errors.extend(validate(root, sub, v, &here)),
                    _ => {}
                },
            }
        }
    }
    if let (Some(items), Some(arr)) = (s.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            errors.extend(validate(root, items, v, &format!("{at}/{i}")));
        }
    }
    if let Some(all) = s.get("allOf").and_then(Value::as_array) {
        for sub in all {
            errors.extend(validate(root, sub, value, at));
        }
    }
    if let Some(any) = s.get("anyOf").and_then(Value::as_array)
        && !any
            .iter()
            .any(|sub| validate(root, sub, value, at).is_empty())
    {
        errors.push(format!("{at}: matches none of anyOf"));
    }
    if let Some(one) = s.get("oneOf").and_then(Value::as_array) {
        let matching = one
            .iter()
            .filter(|sub| validate(root, sub, value, at).is_empty())
            .count();
        if matching != 1 {
            errors.push(format!(
                "{at}: {value} matches {matching} of oneOf, not exactly one"
            ));
        }
    }
    errors
}

/// Recorded SEV-SNP reports, verified by `cloister-attest`, against a policy whose TCB floor is
/// the newer report's TCB. From the attacker's side: a platform that has not taken AMD's
/// firmware updates (the go-sev-guest report: bl=2 snp=5 ucode=68, and a debug guest) is refused
/// with every component below the floor named; the patched platform (virtee: bl=3 tee=0 snp=8
/// ucode=115) passes. Without the `min_tcb` rule the old platform would only fail on debug.
#[rstest]
#[case::unpatched_platform_refused(
    "go-sev-guest/attestation.bin",
    "go-sev-guest/vcek.der",
    &[
        "security.tolerate: debug not tolerated",
        "security.min_tcb: bootloader component 2 below 3",
        "security.min_tcb: snp component 5 below 8",
        "security.min_tcb: microcode component 68 below 115",
    ]
)]
#[case::patched_platform_at_the_floor("virtee-sev/report_milan.hex", "virtee-sev/vcek_milan.der", &[])]
fn recorded_snp_reports_against_a_tcb_floor(
    #[case] report: &str,
    #[case] vcek: &str,
    #[case] expected: &[&str],
) {
    use cloister_attest::{Context, Verifier as _, snp::SnpVerifier};
    let dir = format!(
        "{}/../../testdata/tee-evidence/sev-snp",
        env!("CARGO_MANIFEST_DIR")
    );
    let read = |name: &str| std::fs::read(format!("{dir}/{name}")).unwrap();
    // 2025-01-01T00:00:00Z, inside both VCEKs' windows.
    let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_735_689_600);
    let claims = SnpVerifier::new(read(vcek), None)
        .unwrap()
        .verify(&read(report), &Context::new(now))
        .unwrap()
        .into_claims();
    let yaml = format!(
        "name: test/snp\nversion: 1\naccess:\n  owners:\n    - name: o\n      key: {}\n\
         security:\n  tees: [sev-snp]\n  min_tcb: {{bootloader: 3, tee: 0, snp: 8, microcode: 115}}\n\
         services:\n  - name: job\n    attestation:\n      - tee: sev-snp\n        measurements:\n\
         \x20         - b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01\n\
         \x20         - 7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f\n\
         \x20   env:\n      CLOISTER_BUNDLE_DIGEST: {}\n",
        "MCowBQYDK2VwAyEAiojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=",
        "0d".repeat(32)
    );
    let policy = Policy::parse(&yaml).unwrap_or_else(|p| panic!("{p}"));
    let reasons = policy
        .appraise("job", &claims)
        .err()
        .map(|r| r.reasons)
        .unwrap_or_default();
    assert_eq!(reasons, expected);
}
