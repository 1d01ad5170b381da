//! The checked-in `OpenAPI.yaml` is what the code generates.

#[test]
fn checked_in_openapi_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../OpenAPI.yaml");
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    let generated = gatehouse_api::openapi::yaml();
    assert!(
        checked_in == generated,
        "OpenAPI.yaml is out of date: regenerate it with `cargo run -p gatehouse -- openapi > OpenAPI.yaml`"
    );
}
