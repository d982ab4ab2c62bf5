use k8s_openapi::api::core::v1::{
    ConfigMapEnvSource, EnvFromSource, EnvVarSource, ObjectFieldSelector, PodDNSConfig, PodDNSConfigOption, PodSpec,
    ResourceRequirements, SecretKeySelector,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;

fn config() -> Config {
    Config {
        kubeconfig: "/dev/null".into(),
        node_name: "n1".into(),
        node_ip: None,
        root_dir: "/tmp".into(),
        cluster_dns: vec!["10.96.0.10".parse().expect("ip")],
        cluster_domain: "cluster.local".into(),
        resolv_conf: None,
        pod_cidr: None,
        taints: vec![],
        node_labels: BTreeMap::new(),
        docker_socket: "/var/run/docker.sock".into(),
        pause_image: "rkube/pause:1".into(),
        resync: std::time::Duration::from_secs(1),
        server: None,
    }
}

fn pod(c: Container) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web-1".into()),
            namespace: Some("shop".into()),
            uid: Some("u-1".into()),
            labels: Some(BTreeMap::from([("app".into(), "web".into())])),
            ..Default::default()
        },
        spec: Some(PodSpec { containers: vec![c], node_name: Some("n1".into()), ..Default::default() }),
        status: None,
    }
}

fn var(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), value_from: None }
}

#[test]
fn env_from_then_env_with_references_and_the_downward_api() {
    let c = Container {
        name: "app".into(),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource { name: "cfg".into(), optional: None }),
            prefix: Some("CFG_".into()),
            secret_ref: None,
        }]),
        env: Some(vec![
            var("CFG_MODE", "override"),
            var("GREETING", "hello $(CFG_MODE) $$(CFG_MODE) $(MISSING)"),
            EnvVar {
                name: "POD".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.labels['app']".into(),
                        api_version: None,
                    }),
                    ..Default::default()
                }),
            },
            EnvVar {
                name: "PASSWORD".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: "creds".into(),
                        key: "password".into(),
                        optional: None,
                    }),
                    ..Default::default()
                }),
            },
        ]),
        ..Default::default()
    };
    let sources = Sources {
        config_maps: BTreeMap::from([(
            "cfg".into(),
            BTreeMap::from([("MODE".into(), "fast".into()), ("LEVEL".into(), "3".into())]),
        )]),
        secrets: BTreeMap::from([("creds".into(), BTreeMap::from([("password".into(), "s3cret".into())]))]),
        ..Default::default()
    };
    let p = pod(c.clone());
    let env = environment(&p, &c, &sources).expect("resolves");
    assert_eq!(
        env,
        vec![
            "CFG_LEVEL=3",
            "CFG_MODE=override",
            "GREETING=hello override $(CFG_MODE) $(MISSING)",
            "POD=web",
            "PASSWORD=s3cret"
        ]
    );
    let missing = Sources::default();
    assert_eq!(environment(&p, &c, &missing), Err(ConfigError("configmap \"cfg\" not found".into())));
}

#[test]
fn resources_and_commands_reach_docker() {
    let c = Container {
        name: "app".into(),
        image: Some("busybox".into()),
        command: Some(vec!["sh".into(), "-c".into()]),
        args: Some(vec!["echo $(WHO)".into()]),
        env: Some(vec![var("WHO", "me")]),
        resources: Some(ResourceRequirements {
            limits: Some(BTreeMap::from([
                ("cpu".into(), Quantity("500m".into())),
                ("memory".into(), Quantity("64Mi".into())),
            ])),
            requests: Some(BTreeMap::from([("cpu".into(), Quantity("250m".into()))])),
            ..Default::default()
        }),
        ..Default::default()
    };
    let p = pod(c.clone());
    let spec = container(&p, &c, Kind::App, 2, "sandbox-id", &Sources::default()).expect("spec");
    assert_eq!(spec.docker_name, "k8s_app_web-1_shop_u-1_2");
    assert_eq!(spec.entrypoint, Some(vec!["sh".to_string(), "-c".to_string()]));
    assert_eq!(spec.cmd, Some(vec!["echo me".to_string()]));
    assert_eq!((spec.memory, spec.nano_cpus, spec.cpu_shares), (Some(64 * 1024 * 1024), Some(500_000_000), Some(256)));
    assert_eq!(spec.network_mode, "container:sandbox-id");
    assert_eq!(spec.labels[LABEL_ATTEMPT], "2");
}

#[test]
fn sandbox_dns_follows_the_policy() {
    let p = pod(Container::default());
    let s = sandbox(&p, &config(), 0, &HostDns::default());
    assert_eq!(s.dns, vec!["10.96.0.10"]);
    assert_eq!(s.dns_search, vec!["shop.svc.cluster.local", "svc.cluster.local", "cluster.local"]);
    assert_eq!(s.dns_options, vec!["ndots:5"]);
    assert_eq!(s.hostname.as_deref(), Some("web-1"));
    assert_eq!(s.network_mode, "rk-n1");
    assert_eq!(
        resolv_conf(&s).as_deref(),
        Some("nameserver 10.96.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n")
    );
    let mut host = pod(Container::default());
    host.spec.as_mut().expect("spec").host_network = Some(true);
    let s = sandbox(&host, &config(), 0, &HostDns::default());
    assert_eq!((s.network_mode.as_str(), s.dns.len(), s.hostname.clone()), ("host", 0, None));
    assert_eq!(resolv_conf(&s), None, "hostNetwork pods keep the host's resolv.conf");
    let mut default = pod(Container::default());
    default.spec.as_mut().expect("spec").dns_policy = Some("Default".into());
    assert_eq!(resolv_conf(&sandbox(&default, &config(), 0, &HostDns::default())), None, "nothing known: Docker's");
}

#[test]
fn the_node_resolv_conf_is_read_as_upstream_reads_it() {
    let cases = [
        ("", HostDns::default()),
        (
            "# generated\nnameserver 10.0.0.2\nnameserver 10.0.0.3 # second\nsearch a.example. b.example\noptions ndots:2 edns0\n",
            HostDns {
                nameservers: vec!["10.0.0.2".into(), "10.0.0.3".into()],
                searches: vec!["a.example".into(), "b.example".into()],
                options: vec!["ndots:2".into(), "edns0".into()],
            },
        ),
        (
            "search old.example\n; comment\ndomain ignored.example\nsearch new.example\n",
            HostDns { searches: vec!["new.example".into()], ..Default::default() },
        ),
    ];
    for (text, want) in cases {
        assert_eq!(parse_resolv_conf(text), want, "{text:?}");
    }
}

#[test]
fn each_dns_policy_gets_its_resolv_conf() {
    let host = HostDns {
        nameservers: vec!["10.0.0.2".into(), "10.0.0.3".into(), "10.0.0.4".into(), "10.0.0.5".into()],
        searches: vec!["corp.example".into()],
        options: vec!["edns0".into()],
    };
    let with = |policy: Option<&str>, host_network: bool, extra: Option<PodDNSConfig>, config: &Config| {
        let mut p = pod(Container::default());
        let spec = p.spec.as_mut().expect("spec");
        (spec.dns_policy, spec.host_network, spec.dns_config) = (policy.map(str::to_string), Some(host_network), extra);
        resolv_conf(&sandbox(&p, config, 0, &host))
    };
    let node = "nameserver 10.0.0.2\nnameserver 10.0.0.3\nnameserver 10.0.0.4\nsearch corp.example\noptions edns0\n";
    let cluster = "nameserver 10.96.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local corp.example\noptions ndots:5\n";
    let no_cluster_dns = Config { cluster_dns: vec![], ..config() };
    let extra = PodDNSConfig {
        nameservers: Some(vec!["1.1.1.1".into()]),
        searches: Some(vec!["corp.example".into(), "extra.example".into()]),
        options: Some(vec![PodDNSConfigOption { name: Some("ndots".into()), value: Some("1".into()) }]),
    };
    let cases = [
        (None, false, None, config(), Some(cluster)),
        (Some("ClusterFirst"), false, None, no_cluster_dns.clone(), Some(node)),
        (Some("Default"), false, None, config(), Some(node)),
        (Some("Default"), true, None, config(), None),
        (Some("ClusterFirst"), true, None, config(), None),
        (
            Some("None"),
            false,
            Some(extra.clone()),
            config(),
            Some("nameserver 1.1.1.1\nsearch corp.example extra.example\noptions ndots:1\n"),
        ),
        (
            Some("Default"),
            false,
            Some(extra),
            config(),
            Some(
                "nameserver 10.0.0.2\nnameserver 10.0.0.3\nnameserver 10.0.0.4\nsearch corp.example extra.example\noptions edns0 ndots:1\n",
            ),
        ),
    ];
    for (policy, host_network, extra, config, want) in cases {
        assert_eq!(
            with(policy, host_network, extra, &config).as_deref(),
            want,
            "{policy:?} hostNetwork={host_network}"
        );
    }
}

#[test]
fn expansion_edge_cases() {
    let vars = HashMap::from([("A", "1")]);
    for (input, want) in
        [("$(A)", "1"), ("$$(A)", "$(A)"), ("$(B)", "$(B)"), ("a$", "a$"), ("$(A", "$(A"), ("x$(A)y$(A)", "x1y1")]
    {
        assert_eq!(expand(input, &vars), want, "{input}");
    }
}

#[test]
fn host_ports_are_published_on_the_sandbox_with_their_protocol_and_address() {
    let c: Container = serde_json::from_value(serde_json::json!({
        "name": "web", "image": "x",
        "ports": [
            {"containerPort": 80, "hostPort": 8080},
            {"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "127.0.0.1"},
            {"containerPort": 9090}
        ]
    }))
    .expect("container");
    let mut p = pod(c);
    let sandbox_spec = sandbox(&p, &config(), 0, &HostDns::default());
    assert_eq!(
        sandbox_spec.host_ports,
        [("53/udp".to_string(), "127.0.0.1".to_string(), 5353), ("80/tcp".to_string(), "0.0.0.0".to_string(), 8080)]
    );
    p.spec.as_mut().expect("spec").host_network = Some(true);
    assert!(
        sandbox(&p, &config(), 0, &HostDns::default()).host_ports.is_empty(),
        "a host-network pod listens on the host itself"
    );
}
