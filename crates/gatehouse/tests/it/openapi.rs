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

#[test]
fn every_api_route_is_documented_and_every_documented_route_is_served() {
    let spec = serde_json::to_value(gatehouse_api::openapi::spec()).unwrap();
    let mut documented = std::collections::BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    // The documentation pages and the document itself are not API operations.
    let undocumented = [
        "/docs",
        "/admin/docs",
        gatehouse_api::rest::docs::SCRIPT_PATH,
        "/openapi.json",
    ];
    let served: std::collections::BTreeSet<_> = gatehouse_api::rest::routes()
        .into_iter()
        .filter(|(_, path)| !undocumented.contains(&path.as_str()))
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        served.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "served but not in the OpenAPI document"
    );
    assert_eq!(
        documented.difference(&served).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "documented but not served"
    );
}

/// Every `$ref` of the document names a schema it holds: a generated client
/// (or schemathesis) cannot read a parameter whose schema is missing.
#[test]
fn every_reference_resolves() {
    fn refs<'a>(value: &'a serde_json::Value, found: &mut Vec<&'a str>) {
        match value {
            serde_json::Value::Object(members) => {
                if let Some(target) = members.get("$ref").and_then(|r| r.as_str()) {
                    found.push(target);
                }
                members.values().for_each(|v| refs(v, found));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
            _ => {}
        }
    }
    let spec = serde_json::to_value(gatehouse_api::openapi::spec()).unwrap();
    let mut found = Vec::new();
    refs(&spec, &mut found);
    assert!(found.len() > 100, "only {} references", found.len());
    let missing: std::collections::BTreeSet<&str> = found
        .into_iter()
        .filter(|target| {
            let name = target.trim_start_matches("#/components/schemas/");
            spec["components"]["schemas"].get(name).is_none()
        })
        .collect();
    assert!(missing.is_empty(), "unresolved: {missing:?}");
}
