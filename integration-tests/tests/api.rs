//! The API server against real etcd, driven by kube-rs (a client nobody here wrote).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use futures::{StreamExt, TryStreamExt};
use integration_tests::{ApiServer, Cluster};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

fn pod(name: &str, labels: &[(&str, &str)]) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>() },
        "spec": { "containers": [{ "name": "app", "image": "busybox:1.36" }] }
    }))
    .expect("valid pod")
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

#[tokio::test]
async fn crud_conflicts_and_defaults() -> Result<()> {
    let c = Cluster::start().await?;
    let pods: Api<Pod> = Api::namespaced(c.client().await?, "default");

    let created = pods.create(&PostParams::default(), &pod("web", &[("app", "web")])).await?;
    let meta = &created.metadata;
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some() && meta.resource_version.is_some());
    let spec = created.spec.as_ref().expect("spec");
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"), "defaulted");
    assert_eq!(created.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Pending"));

    // A second create is 409 AlreadyExists.
    let again = pods.create(&PostParams::default(), &pod("web", &[])).await.expect_err("exists");
    assert_eq!(status_code(&again), Some(409));

    // Update with a stale resourceVersion is 409 Conflict; with the current one it works.
    let mut stale = created.clone();
    let mut fresh = created.clone();
    fresh.metadata.labels.get_or_insert_default().insert("tier".into(), "front".into());
    let updated = pods.replace("web", &PostParams::default(), &fresh).await?;
    assert_ne!(updated.metadata.resource_version, created.metadata.resource_version);
    stale.metadata.labels.get_or_insert_default().insert("tier".into(), "back".into());
    let conflict = pods.replace("web", &PostParams::default(), &stale).await.expect_err("stale");
    assert_eq!(status_code(&conflict), Some(409));

    // Merge, JSON and strategic merge patches.
    let p = pods
        .patch("web", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"a": "1"}}})))
        .await?;
    assert_eq!(p.metadata.annotations.as_ref().and_then(|a| a.get("a")).map(String::as_str), Some("1"));
    let jp = json!([{"op": "add", "path": "/metadata/labels/j", "value": "x"}]);
    let req = http::Request::patch("/api/v1/namespaces/default/pods/web")
        .header("content-type", "application/json-patch+json")
        .body(serde_json::to_vec(&jp)?)?;
    c.client().await?.request_text(req).await?;
    let p = pods.get("web").await?;
    assert_eq!(p.metadata.labels.as_ref().and_then(|l| l.get("j")).map(String::as_str), Some("x"));
    let p = pods
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"containers": [{"name": "app", "image": "busybox:1.37"}]}})),
        )
        .await?;
    let containers = &p.spec.as_ref().expect("spec").containers;
    assert_eq!((containers.len(), containers[0].image.as_deref()), (1, Some("busybox:1.37")));

    // dryRun writes nothing; generateName picks a name.
    let dry = PostParams { dry_run: true, ..Default::default() };
    pods.create(&dry, &pod("ghost", &[])).await?;
    assert!(pods.get_opt("ghost").await?.is_none());
    let mut generated = pod("", &[]);
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".into());
    let g = pods.create(&PostParams::default(), &generated).await?;
    assert!(g.metadata.name.as_deref().is_some_and(|n| n.starts_with("gen-") && n.len() == 9));

    // Delete of an unbound pod is immediate; then 404.
    pods.delete("web", &DeleteParams::default()).await?;
    let gone = pods.get("web").await.expect_err("deleted");
    assert_eq!(status_code(&gone), Some(404));
    Ok(())
}

#[tokio::test]
async fn selectors_paging_and_finalizers() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for i in 0..25 {
        let tier = if i % 2 == 0 { "even" } else { "odd" };
        pods.create(&PostParams::default(), &pod(&format!("p{i:02}"), &[("tier", tier)])).await?;
    }
    let even = pods.list(&ListParams::default().labels("tier=even")).await?;
    assert_eq!(even.items.len(), 13);
    let set = pods.list(&ListParams::default().labels("tier in (odd),tier notin (even)")).await?;
    assert_eq!(set.items.len(), 12);
    let by_name = pods.list(&ListParams::default().fields("metadata.name=p03")).await?;
    assert_eq!(by_name.items.len(), 1);
    let bad = pods.list(&ListParams::default().fields("spec.bogus=x")).await.expect_err("unsupported field");
    assert_eq!(status_code(&bad), Some(400));

    // Pages of 10 at one resourceVersion cover everything exactly once.
    let mut seen = Vec::new();
    let mut params = ListParams::default().limit(10);
    loop {
        let page = pods.list(&params).await?;
        seen.extend(page.items.iter().filter_map(|p| p.metadata.name.clone()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = ListParams::default().limit(10).continue_token(&token),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    let mut sorted = seen.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), 25);

    // A finalizer keeps a deleted object until it is removed.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}, "data": {"k": "v"}}),
    )?;
    cms.create(&PostParams::default(), &cm).await?;
    cms.delete("held", &DeleteParams::default()).await?;
    let held = cms.get("held").await?;
    assert!(held.metadata.deletion_timestamp.is_some());
    cms.patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await?;
    assert!(cms.get_opt("held").await?.is_none(), "removing the last finalizer deletes it");
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_a_status_not_a_crash() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let raw = |method: &str, path: &str, ctype: &str, body: &str| {
        http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", ctype)
            .body(body.as_bytes().to_vec())
            .expect("request")
    };
    let cases = [
        ("POST", "/api/v1/namespaces/default/configmaps", "application/json", "{not json", 400),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps?fieldValidation=Strict",
            "application/json",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"dta":{}}"#,
            400,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps?fieldValidation=Strict",
            "application/json",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","name":"b"}}"#,
            400,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"a"}}"#,
            400,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Not_Valid"}}"#,
            422,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/pods",
            "application/json",
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[]}}"#,
            422,
        ),
        (
            "POST",
            "/api/v1/namespaces/nowhere/configmaps",
            "application/json",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}"#,
            404,
        ),
        (
            "PUT",
            "/api/v1/namespaces/default/configmaps/a",
            "application/json",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b"}}"#,
            400,
        ),
        ("POST", "/api/v1/namespaces/default/configmaps", "application/vnd.kubernetes.protobuf", "x", 400),
        ("POST", "/api/v1/namespaces/default/configmaps", "application/vnd.kubernetes.protobuf", "k8s\0\n\x05", 400),
        ("POST", "/api/v1/namespaces/default/configmaps", "application/cbor", "x", 415),
        ("GET", "/api/v1/namespaces/default/widgets", "application/json", "", 404),
    ];
    for (method, path, ctype, body, want) in cases {
        let text = match client.request_text(raw(method, path, ctype, body)).await {
            Ok(t) => panic!("{method} {path}: expected {want}, got success {t}"),
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, want, "{method} {path} {body}: {}", s.message);
                s.message
            }
            Err(e) => panic!("{method} {path}: {e}"),
        };
        assert!(!text.is_empty());
    }
    // 413 for a body over the limit.
    let small = ApiServer::start_with(&c.etcd.endpoints(), &c.pki, |cfg| cfg.max_request_bytes = 1024).await?;
    let big = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"k":"{}"}}}}"#,
        "x".repeat(4096)
    );
    let err = small
        .client()
        .await?
        .request_text(raw("POST", "/api/v1/namespaces/default/configmaps", "application/json", &big))
        .await
        .expect_err("too large");
    assert_eq!(status_code(&err), Some(413));
    Ok(())
}

#[tokio::test]
async fn namespaces_exist_and_terminating_ones_refuse_content() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let ns: Api<Namespace> = Api::all(client.clone());
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(ns.get_opt(name).await?.is_some(), "{name}");
    }
    ns.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "doomed"}}))?).await?;
    ns.delete("doomed", &DeleteParams::default()).await?;
    let doomed = ns.get("doomed").await?;
    assert_eq!(doomed.status.and_then(|s| s.phase).as_deref(), Some("Terminating"));
    let cms: Api<ConfigMap> = Api::namespaced(client, "doomed");
    let err = cms
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "x"}}))?)
        .await
        .expect_err("terminating");
    assert_eq!(status_code(&err), Some(403));
    Ok(())
}

#[tokio::test]
async fn scale_subresource_and_binding() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    }))?;
    let created = deploys.create(&PostParams::default(), &d).await?;
    assert_eq!(created.spec.as_ref().and_then(|s| s.replicas), Some(1));
    assert_eq!(created.metadata.generation, Some(1));
    let scale =
        deploys.patch_scale("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 4}}))).await?;
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(4));
    let after = deploys.get("web").await?;
    assert_eq!((after.spec.and_then(|s| s.replicas), after.metadata.generation), (Some(4), Some(2)));

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("bindme", &[])).await?;
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "bindme"}, "target": {"kind": "Node", "name": "n1"}});
    let req = http::Request::post("/api/v1/namespaces/default/pods/bindme/binding")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&binding)?)?;
    client.request_text(req).await?;
    let bound = pods.get("bindme").await?;
    assert_eq!(bound.spec.and_then(|s| s.node_name).as_deref(), Some("n1"));
    let req = http::Request::post("/api/v1/namespaces/default/pods/bindme/binding")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&binding)?)?;
    assert_eq!(status_code(&client.request_text(req).await.expect_err("bound twice")), Some(409));
    // A bound pod is deleted gracefully: marked, not removed (the kubelet finishes it).
    pods.delete("bindme", &DeleteParams::default()).await?;
    let marked = pods.get("bindme").await?;
    assert_eq!(marked.metadata.deletion_grace_period_seconds, Some(30));
    pods.delete("bindme", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await?;
    assert!(pods.get_opt("bindme").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn services_get_cluster_ips_and_node_ports() -> Result<()> {
    let c = Cluster::start().await?;
    let svcs: Api<Service> = Api::namespaced(c.client().await?, "default");
    let svc = |name: &str, node_port: Option<i32>| -> Service {
        serde_json::from_value(
            json!({"metadata": {"name": name}, "spec": {"type": "NodePort", "selector": {"app": name}, "ports": [{"port": 80, "nodePort": node_port}]}}),
        )
        .expect("svc")
    };
    let a = svcs.create(&PostParams::default(), &svc("a", Some(30080))).await?;
    let spec = a.spec.expect("spec");
    assert!(spec.cluster_ip.as_deref().is_some_and(|ip| ip.starts_with("10.")));
    assert_eq!(spec.ports.as_ref().and_then(|p| p[0].node_port), Some(30080));
    let taken = svcs.create(&PostParams::default(), &svc("b", Some(30080))).await.expect_err("port taken");
    assert_eq!(status_code(&taken), Some(422));
    svcs.delete("a", &DeleteParams::default()).await?;
    svcs.create(&PostParams::default(), &svc("b", Some(30080))).await?;
    // A plain type change drops the node ports and policy only NodePorts need, and frees the
    // port, as upstream; asking for a new node port on a ClusterIP Service is still a 422.
    let bad = json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 30081}]}});
    let refused = svcs.patch("b", &PatchParams::default(), &Patch::Merge(&bad)).await.expect_err("a new node port");
    assert_eq!(status_code(&refused), Some(422));
    let to_cluster_ip = json!({"spec": {"type": "ClusterIP"}});
    let b = svcs.patch("b", &PatchParams::default(), &Patch::Merge(&to_cluster_ip)).await?;
    let spec = b.spec.expect("spec");
    assert_eq!(spec.ports.as_ref().and_then(|p| p[0].node_port), None);
    assert_eq!(spec.external_traffic_policy, None);
    svcs.create(&PostParams::default(), &svc("c", Some(30080))).await?;
    Ok(())
}

/// Concurrent creates go to etcd in batches: each still answers for itself (201 or 409, an
/// allocated port given once), and a watch sees every created object exactly once.
#[tokio::test]
async fn concurrent_creates_answer_each_and_reach_every_watch() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let from = cms.list(&ListParams::default()).await?.metadata.resource_version.expect("rv");
    let mut watch = cms.watch(&WatchParams::default().timeout(30), &from).await?.boxed();

    // 300 creates of 150 names, 64 at a time: every name is created once, the rest are 409.
    let results: Vec<Result<ConfigMap, kube::Error>> = futures::stream::iter((0..300).map(|i| {
        let cms = cms.clone();
        async move {
            let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": format!("cm-{}", i % 150)}}))?;
            Ok::<_, anyhow::Error>(cms.create(&PostParams::default(), &cm).await)
        }
    }))
    .buffer_unordered(64)
    .try_collect()
    .await?;
    let created: Vec<&ConfigMap> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    let conflicts = results.iter().filter(|r| r.as_ref().err().and_then(status_code) == Some(409)).count();
    assert_eq!((created.len(), conflicts), (150, 150), "{:?}", results.iter().find(|r| r.is_err()));
    let mut revisions: Vec<u64> =
        created.iter().filter_map(|cm| cm.metadata.resource_version.as_ref()?.parse().ok()).collect();
    revisions.sort_unstable();
    revisions.dedup();
    assert!(revisions.len() < 150, "some creates shared a transaction ({} revisions)", revisions.len());

    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 150 {
        match tokio::time::timeout(Duration::from_secs(10), watch.try_next()).await?? {
            Some(WatchEvent::Added(cm)) => assert!(seen.insert(cm.metadata.name.unwrap_or_default()), "ADDED twice"),
            Some(WatchEvent::Bookmark(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // A watch resumed from the first batch's resourceVersion starts after the whole batch.
    let first = revisions[0].to_string();
    let at_first = created.iter().filter(|cm| cm.metadata.resource_version.as_deref() == Some(&first)).count();
    let mut resumed = cms.watch(&WatchParams::default().timeout(5), &first).await?.boxed();
    let mut after = 0;
    while let Some(ev) = resumed.try_next().await? {
        match ev {
            WatchEvent::Added(_) => after += 1,
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(after, 150 - at_first);

    // Services created at once asking for one nodePort: exactly one gets it.
    let svcs: Api<Service> = Api::namespaced(client, "default");
    let results: Vec<Result<Service, kube::Error>> = futures::future::join_all((0..16).map(|i| {
        let svcs = svcs.clone();
        async move {
            let svc: Service = serde_json::from_value(json!({"metadata": {"name": format!("np-{i}")},
                "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30111}]}}))
            .expect("svc");
            svcs.create(&PostParams::default(), &svc).await
        }
    }))
    .await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    let refused = results.iter().filter(|r| r.as_ref().err().and_then(status_code) == Some(422)).count();
    assert_eq!((won, refused), (1, 15));
    Ok(())
}

#[tokio::test]
async fn watches_resume_filter_and_expire() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let first = pods.create(&PostParams::default(), &pod("w1", &[("app", "x")])).await?;
    let rv = first.metadata.resource_version.clone().expect("rv");
    pods.create(&PostParams::default(), &pod("w2", &[("app", "x")])).await?;
    pods.patch("w1", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"app": "y"}}}))).await?;

    // From rv: w2 ADDED, then w1 leaving app=x arrives as DELETED.
    let mut stream = pods.watch(&WatchParams::default().labels("app=x").timeout(10), &rv).await?.boxed();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(10), stream.try_next()).await?? {
            Some(WatchEvent::Added(p)) => seen.push(format!("ADDED {}", p.metadata.name.unwrap_or_default())),
            Some(WatchEvent::Deleted(p)) => seen.push(format!("DELETED {}", p.metadata.name.unwrap_or_default())),
            Some(WatchEvent::Bookmark(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, vec!["ADDED w2", "DELETED w1"]);

    // Across an API server restart, a watch from an old resourceVersion misses nothing.
    let second = ApiServer::start(&c.etcd.endpoints(), &c.pki).await?;
    let pods2: Api<Pod> = Api::namespaced(second.client().await?, "default");
    let mut all = pods2.watch(&WatchParams::default().timeout(10), &rv).await?.boxed();
    let mut names = Vec::new();
    while names.len() < 2 {
        if let Some(WatchEvent::Added(p) | WatchEvent::Modified(p)) =
            tokio::time::timeout(Duration::from_secs(10), all.try_next()).await??
        {
            names.push(p.metadata.name.unwrap_or_default());
        }
    }
    assert_eq!(names, vec!["w2", "w1"]);

    // After compaction an old resourceVersion is 410 Expired.
    let mut etcd = c.etcd.client().await?;
    let now = etcd.get("/", None).await?.header().map(|h| h.revision()).unwrap_or(0);
    etcd.compact(now, None).await?;
    let fresh = ApiServer::start(&c.etcd.endpoints(), &c.pki).await?;
    let pods3: Api<Pod> = Api::namespaced(fresh.client().await?, "default");
    let mut old = pods3.watch(&WatchParams::default().timeout(10), &rv).await?.boxed();
    match tokio::time::timeout(Duration::from_secs(10), old.try_next()).await?? {
        Some(WatchEvent::Error(e)) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn only_authenticated_clients_get_past_health() -> Result<()> {
    let etcd = integration_tests::Etcd::start().await?;
    let pki = integration_tests::Pki::generate()?;
    let tokens = pki.dir.path().join("tokens.csv");
    std::fs::write(&tokens, "s3cret,alice,1001,\"dev,ops\"\n")?;
    let api = ApiServer::start_with(&etcd.endpoints(), &pki, |c| c.token_auth_file = Some(tokens.clone())).await?;
    let get = |path: &str| http::Request::get(path).body(Vec::new()).expect("request");

    let anonymous = integration_tests::client_from(&pki.kubeconfig_as(api.addr, "anon", "")?).await?;
    for path in ["/healthz", "/livez", "/readyz"] {
        assert_eq!(anonymous.request_text(get(path)).await?, "ok", "{path}");
    }
    for path in ["/api", "/version", "/api/v1/namespaces", "/metrics"] {
        let err = anonymous.request_text(get(path)).await.expect_err("anonymous");
        assert_eq!(status_code(&err), Some(401), "{path}");
    }
    let alice = integration_tests::client_from(&pki.kubeconfig_as(api.addr, "alice", "    token: s3cret\n")?).await?;
    let ns: Api<Namespace> = Api::all(alice);
    assert!(ns.get_opt("default").await?.is_some());
    let mallory =
        integration_tests::client_from(&pki.kubeconfig_as(api.addr, "mallory", "    token: guess\n")?).await?;
    let err = mallory.request_text(get("/api/v1/namespaces")).await.expect_err("bad token");
    assert_eq!(status_code(&err), Some(401));
    Ok(())
}

#[tokio::test]
async fn etcd_over_tls_with_client_certificates() -> Result<()> {
    let pki = integration_tests::Pki::generate()?;
    let etcd = integration_tests::Etcd::start_tls(&pki).await?;
    let tls = etcd.tls.clone().expect("tls");
    // Without a client certificate etcd refuses the API server.
    let plain = apiserver::storage::Store::connect(
        &etcd.endpoints(),
        &apiserver::storage::EtcdTls { ca_file: Some(tls.ca.clone()), ..Default::default() },
        Default::default(),
    )
    .await;
    let refused = match plain {
        Err(_) => true,
        Ok(store) => tokio::time::timeout(Duration::from_secs(5), store.revision()).await.map_or(true, |r| r.is_err()),
    };
    assert!(refused, "etcd accepted a client without a certificate");
    let api = ApiServer::start_with(&etcd.endpoints(), &pki, |c| c.etcd_tls = tls.for_apiserver()).await?;
    let cms: Api<ConfigMap> = Api::namespaced(api.client().await?, "default");
    cms.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "over-tls"}}))?).await?;
    assert!(cms.get_opt("over-tls").await?.is_some());
    Ok(())
}

#[tokio::test]
async fn deletecollection_bookmarks_generation_and_metrics() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for (name, keep) in [("a", "no"), ("b", "no"), ("c", "yes")] {
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name, "labels": {"keep": keep}}}))?;
        cms.create(&PostParams::default(), &cm).await?;
    }
    // A list right after writes sees them (a consistent read).
    let before: Vec<String> =
        cms.list(&ListParams::default()).await?.items.into_iter().filter_map(|c| c.metadata.name).collect();
    assert_eq!(before, vec!["a", "b", "c"]);
    cms.delete_collection(&DeleteParams::default(), &ListParams::default().labels("keep=no")).await?;
    let left: Vec<String> =
        cms.list(&ListParams::default()).await?.items.into_iter().filter_map(|c| c.metadata.name).collect();
    assert_eq!(left, vec!["c"]);

    // Metadata-only changes leave generation alone; spec changes bump it.
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "gen"},
        "spec": {"selector": {"matchLabels": {"app": "gen"}}, "template": {"metadata": {"labels": {"app": "gen"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    }))?;
    deploys.create(&PostParams::default(), &d).await?;
    let labelled = deploys
        .patch("gen", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})))
        .await?;
    assert_eq!(labelled.metadata.generation, Some(1));
    let respec =
        deploys.patch("gen", &PatchParams::default(), &Patch::Merge(json!({"spec": {"paused": true}}))).await?;
    assert_eq!(respec.metadata.generation, Some(2));

    // A watch that allows bookmarks gets one carrying a resourceVersion once there is progress.
    let rv = cms.list(&ListParams::default()).await?.metadata.resource_version.expect("rv");
    let mut stream = cms.watch(&WatchParams::default().timeout(30), &rv).await?.boxed();
    cms.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "d"}}))?).await?;
    let bookmark = tokio::time::timeout(Duration::from_secs(25), async {
        while let Some(ev) = stream.try_next().await? {
            if let WatchEvent::Bookmark(b) = ev {
                return Ok::<_, kube::Error>(Some(b.metadata.resource_version));
            }
        }
        Ok(None)
    })
    .await??;
    assert!(bookmark.is_some_and(|v| v.parse::<i64>().is_ok_and(|v| v > 0)));

    let metrics = client.request_text(http::Request::get("/metrics").body(Vec::new())?).await?;
    for (family, labels) in [
        ("rk_apiserver_requests_total{", ["verb=\"create\"", "resource=\"configmaps\"", "code=\"201\""].as_slice()),
        ("rk_apiserver_request_duration_seconds_bucket{", &["verb=\"list\"", "resource=\"configmaps\""]),
        ("rk_apiserver_etcd_request_duration_seconds_bucket{", &["operation=\"create\""]),
        ("rk_apiserver_watchers{", &["resource=\"configmaps\""]),
    ] {
        let found = metrics.lines().any(|l| l.starts_with(family) && labels.iter().all(|x| l.contains(x)));
        assert!(found, "{family} {labels:?} missing from /metrics");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_larger_than_a_grpc_message_are_read_in_chunks() -> Result<()> {
    let c = Cluster::start().await?;
    let cms: Api<ConfigMap> = Api::namespaced(c.client().await?, "default");
    let blob = "x".repeat(200 * 1024);
    for i in 0..30 {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": format!("big-{i:02}")}, "data": {"blob": blob}}))?;
        cms.create(&PostParams::default(), &cm).await?;
    }
    // 6 MiB: more than gRPC's 4 MiB per message, from etcd (a paged list reads etcd)…
    assert_eq!(cms.list(&ListParams::default().limit(500)).await?.items.len(), 30);
    // …and through the watch cache of a server that loads it all at start.
    let second = ApiServer::start(&c.etcd.endpoints(), &c.pki).await?;
    let cached: Api<ConfigMap> = Api::namespaced(second.client().await?, "default");
    let any = ListParams { resource_version: Some("0".into()), ..Default::default() };
    assert_eq!(cached.list(&any).await?.items.len(), 30);
    Ok(())
}

/// The count of etcd requests of one operation, from the API server's own /metrics.
async fn etcd_requests(client: &kube::Client, operation: &str) -> Result<u64> {
    let metrics = client.request_text(http::Request::get("/metrics").body(Vec::new())?).await?;
    let prefix = format!("rk_apiserver_etcd_request_duration_seconds_count{{operation=\"{operation}\"}} ");
    Ok(metrics.lines().find_map(|l| l.strip_prefix(&prefix)?.parse().ok()).unwrap_or(0))
}

/// A LIST without a resourceVersion must show every write acknowledged before it. It is served
/// from the watch cache once etcd confirms the cache is current, so each write is checked by a
/// list issued the moment the write returns, before the cache may have seen it.
#[tokio::test]
async fn consistent_lists_from_the_cache_see_every_acknowledged_write() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let names = |list: &kube::api::ObjectList<ConfigMap>| -> Vec<String> {
        list.items.iter().filter_map(|cm| cm.metadata.name.clone()).collect()
    };
    let cm = |name: &str, value: &str| -> Result<ConfigMap> {
        Ok(serde_json::from_value(json!({"metadata": {"name": name}, "data": {"v": value}}))?)
    };
    cms.create(&PostParams::default(), &cm("steady", "0")?).await?;
    for i in 0..30 {
        let name = format!("cm-{i}");
        let created = cms.create(&PostParams::default(), &cm(&name, "1")?).await?;
        let listed = cms.list(&ListParams::default()).await?;
        assert!(names(&listed).contains(&name), "create {i} missing from the list after it");
        let rv = |l: &kube::api::ObjectList<ConfigMap>| -> u64 {
            l.metadata.resource_version.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0)
        };
        assert!(rv(&listed) >= created.metadata.resource_version.as_deref().unwrap_or("0").parse()?);

        let patch = json!({"data": {"v": "2"}});
        cms.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        let listed = cms.list(&ListParams::default()).await?;
        let value =
            listed.items.iter().find(|c| c.metadata.name.as_deref() == Some(&name)).and_then(|c| c.data.clone());
        assert_eq!(value.and_then(|d| d.get("v").cloned()).as_deref(), Some("2"), "update {i} not in the list");

        cms.delete(&name, &DeleteParams::default()).await?;
        let listed = cms.list(&ListParams::default()).await?;
        assert_eq!(names(&listed), ["steady"], "delete {i} not in the list");
    }
    // With nothing changing, lists are answered by the cache after one summary read each.
    let summaries_before = etcd_requests(&client, "summary").await?;
    let lists_before = etcd_requests(&client, "list").await?;
    for _ in 0..10 {
        assert_eq!(names(&cms.list(&ListParams::default()).await?), ["steady"]);
    }
    assert_eq!(etcd_requests(&client, "list").await?, lists_before, "quiet lists read etcd's values");
    assert_eq!(etcd_requests(&client, "summary").await? - summaries_before, 10);
    Ok(())
}
