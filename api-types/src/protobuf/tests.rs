use std::sync::OnceLock;

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Namespace, Pod, Secret, Service},
};
use serde_json::json;

use super::*;
use crate::schema::Root;

fn decoder() -> &'static Decoder {
    static DECODER: OnceLock<Decoder> = OnceLock::new();
    DECODER.get_or_init(|| {
        let roots = [
            Root::resource::<Namespace>(),
            Root::resource::<Pod>(),
            Root::resource::<Service>(),
            Root::resource::<Secret>(),
            Root::resource::<Deployment>(),
        ];
        Decoder::new(&Definitions::from_roots(&roots))
    })
}

/// A message under construction, written the way Go's generated marshallers write it.
#[derive(Default, Clone)]
struct Msg(Vec<u8>);

impl Msg {
    fn key(mut self, tag: u32, wire: u64) -> Self {
        put_varint(&mut self.0, (u64::from(tag) << 3) | wire);
        self
    }
    fn varint(self, tag: u32, v: i64) -> Self {
        let mut m = self.key(tag, 0);
        put_varint(&mut m.0, v as u64);
        m
    }
    fn bytes(self, tag: u32, b: &[u8]) -> Self {
        let mut m = self.key(tag, 2);
        put_varint(&mut m.0, b.len() as u64);
        m.0.extend_from_slice(b);
        m
    }
    fn str(self, tag: u32, s: &str) -> Self {
        self.bytes(tag, s.as_bytes())
    }
    fn msg(self, tag: u32, m: Msg) -> Self {
        self.bytes(tag, &m.0)
    }
    fn entry(self, tag: u32, key: &str, value: Msg) -> Self {
        self.msg(tag, Msg::default().str(1, key).msg(2, value))
    }
    fn str_entry(self, tag: u32, key: &str, value: &str) -> Self {
        self.msg(tag, Msg::default().str(1, key).str(2, value))
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn body(api_version: &str, kind: &str, raw: Msg) -> Vec<u8> {
    let envelope =
        Msg::default().msg(1, Msg::default().str(1, api_version).str(2, kind)).msg(2, raw).str(3, "").str(4, "");
    [MAGIC, &envelope.0].concat()
}

/// ObjectMeta as Go writes it: every non-pointer field, so empty strings and the zero time.
fn meta(name: &str) -> Msg {
    Msg::default()
        .str(1, name)
        .str(2, "")
        .str(3, "")
        .str(5, "")
        .str(6, "")
        .varint(7, 0)
        .msg(8, Msg::default().varint(1, GO_ZERO_TIME).varint(2, 0))
}

#[test]
fn namespace_as_kubectl_create_sends_it() {
    let raw = Msg::default().msg(1, meta("team-a")).msg(2, Msg::default()).msg(3, Msg::default().str(1, ""));
    let value = decoder().decode(&body("v1", "Namespace", raw)).expect("decodes");
    assert_eq!(
        value,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a", "generation": 0}, "spec": {}, "status": {}})
    );
}

#[test]
fn pod_names_quantities_and_acronyms() {
    let resources = Msg::default().entry(1, "cpu", Msg::default().str(1, "500m")).entry(
        2,
        "memory",
        Msg::default().str(1, "128Mi"),
    );
    let container = Msg::default()
        .str(1, "web")
        .str(2, "nginx:1.27")
        .str(3, "sh")
        .str(3, "")
        .msg(6, Msg::default().str(1, "http").varint(3, 8080).str(4, "TCP"))
        .msg(7, Msg::default().str(1, "MODE").str(2, "fast"))
        .msg(8, resources);
    let spec = Msg::default().msg(2, container).str(3, "Always").varint(4, 30).varint(11, 1).str(6, "ClusterFirst");
    let status = Msg::default().str(6, "10.0.0.7").msg(7, Msg::default().varint(1, 1_700_000_000));
    let raw = Msg::default().msg(1, meta("web").str_entry(11, "app", "web")).msg(2, spec).msg(3, status);
    let value = decoder().decode(&body("v1", "Pod", raw)).expect("decodes");
    assert_eq!(value["metadata"]["labels"], json!({"app": "web"}));
    let c = &value["spec"]["containers"][0];
    assert_eq!(c["command"], json!(["sh", ""]));
    assert_eq!(c["ports"], json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}]));
    assert_eq!(c["env"], json!([{"name": "MODE", "value": "fast"}]));
    assert_eq!(c["resources"]["limits"], json!({"cpu": "500m"}));
    assert_eq!(c["resources"]["requests"], json!({"memory": "128Mi"}));
    assert_eq!(value["spec"]["terminationGracePeriodSeconds"], json!(30));
    assert_eq!(value["spec"]["hostNetwork"], json!(true));
    assert_eq!(value["status"]["podIP"], json!("10.0.0.7"));
    assert_eq!(value["status"]["startTime"], json!("2023-11-14T22:13:20Z"));
    let pod: Pod = serde_json::from_value(value).expect("decodes");
    assert_eq!(pod.spec.expect("spec").dns_policy.as_deref(), Some("ClusterFirst"));
}

#[test]
fn service_int_or_string_and_selector() {
    let by_name = Msg::default().varint(1, 1).varint(2, 0).str(3, "http");
    let by_number = Msg::default().varint(1, 0).varint(2, 8080).str(3, "");
    let spec = Msg::default()
        .msg(1, Msg::default().str(1, "http").str(2, "TCP").varint(3, 80).msg(4, by_name).varint(5, 0))
        .msg(1, Msg::default().str(1, "alt").str(2, "TCP").varint(3, 81).msg(4, by_number).varint(5, 30001))
        .str_entry(2, "app", "web")
        .str(4, "NodePort");
    let value =
        decoder().decode(&body("v1", "Service", Msg::default().msg(1, meta("web")).msg(2, spec))).expect("decodes");
    assert_eq!(value["spec"]["ports"][0]["targetPort"], json!("http"));
    assert_eq!(value["spec"]["ports"][1]["targetPort"], json!(8080));
    assert_eq!(value["spec"]["ports"][1]["nodePort"], json!(30001));
    assert_eq!(value["spec"]["selector"], json!({"app": "web"}));
    assert_eq!(value["spec"]["type"], json!("NodePort"));
}

#[test]
fn secret_bytes_are_base64() {
    let raw = Msg::default()
        .msg(1, meta("creds"))
        .msg(2, Msg::default().str(1, "password").bytes(2, b"s3cr\xff"))
        .str(3, "Opaque");
    let value = decoder().decode(&body("v1", "Secret", raw)).expect("decodes");
    assert_eq!(value["data"], json!({"password": "czNjcv8="}));
    assert_eq!(value["type"], json!("Opaque"));
}

#[test]
fn deployment_keeps_zero_replicas_and_reaches_the_group() {
    let template = Msg::default()
        .msg(1, meta("").str_entry(11, "app", "web"))
        .msg(2, Msg::default().msg(2, Msg::default().str(1, "web").str(2, "nginx")));
    let selector = Msg::default().str_entry(1, "app", "web");
    let spec = Msg::default().varint(1, 0).msg(2, selector).msg(3, template);
    let value = decoder()
        .decode(&body("apps/v1", "Deployment", Msg::default().msg(1, meta("web")).msg(2, spec)))
        .expect("decodes");
    assert_eq!(value["apiVersion"], json!("apps/v1"));
    assert_eq!(value["spec"]["replicas"], json!(0));
    assert_eq!(value["spec"]["selector"], json!({"matchLabels": {"app": "web"}}));
    assert_eq!(value["spec"]["template"]["spec"]["containers"], json!([{"name": "web", "image": "nginx"}]));
}

#[test]
fn bad_bodies_are_errors_not_panics() {
    let d = decoder();
    assert_eq!(d.decode(b"{\"kind\":\"Pod\"}"), Err(ProtobufError::NoPrefix));
    let good = body("v1", "Namespace", Msg::default().msg(1, meta("x")));
    for cut in 4..good.len() - 1 {
        // Every truncation is either an error or a (shorter) object; none panics.
        let _ = d.decode(&good[..cut]);
    }
    assert!(matches!(d.decode(&good[..good.len() - 1]), Err(ProtobufError::Malformed(_))));
    assert!(matches!(
        d.decode(&body("example.com/v1", "Widget", Msg::default())),
        Err(ProtobufError::UnknownKind { .. })
    ));
    let encoded = [MAGIC, &Msg::default().msg(1, Msg::default().str(1, "v1").str(2, "Pod")).str(3, "gzip").0].concat();
    assert_eq!(d.decode(&encoded), Err(ProtobufError::ContentEncoding("gzip".into())));
    let wrong_wire = body("v1", "Namespace", Msg::default().msg(1, Msg::default().varint(1, 5)));
    assert!(matches!(d.decode(&wrong_wire), Err(ProtobufError::Field { field, .. }) if field == "metadata.name"));
}

#[test]
fn times_and_durations() {
    for (seconds, micros, want) in [
        (0, None, "1970-01-01T00:00:00Z"),
        (951_782_400, None, "2000-02-29T00:00:00Z"),
        (1_700_000_000, Some(123_456_789), "2023-11-14T22:13:20.123456Z"),
        (-86_400, None, "1969-12-31T00:00:00Z"),
    ] {
        assert_eq!(rfc3339(seconds, micros), want);
    }
    for (nanos, want) in [
        (0, "0s"),
        (1_500_000_000, "1.5s"),
        (90_000_000_000, "1m30s"),
        (3_600_000_000_000, "1h0m0s"),
        (500_000_000, "500ms"),
        (-2_000_000_000, "-2s"),
    ] {
        assert_eq!(go_duration(nanos), want);
    }
}

#[test]
fn embedded_structs_are_inlined() {
    let config_map = Msg::default().msg(1, Msg::default().str(1, "settings")).varint(3, 0o644);
    let volume = Msg::default().str(1, "cfg").msg(2, Msg::default().msg(19, config_map));
    let spec = Msg::default().msg(1, volume).msg(2, Msg::default().str(1, "web").str(2, "nginx"));
    let value = decoder().decode(&body("v1", "Pod", Msg::default().msg(1, meta("web")).msg(2, spec))).expect("decodes");
    assert_eq!(
        value["spec"]["volumes"],
        json!([{"name": "cfg", "configMap": {"name": "settings", "defaultMode": 420}}])
    );
}
