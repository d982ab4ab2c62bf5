//! Answering one query from the cluster records: a pure function from (records, query) to a reply
//! message or "forward it", plus the wire-level helpers the server needs (UDP truncation, FORMERR
//! for bytes that do not even parse).

use hickory_proto::ProtoError;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, SRV};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::records::{Node, Records, TTL, lookup_key};

/// The UDP payload size this server advertises and will send at most (the DNS Flag Day 2020
/// value, small enough to avoid IP fragmentation).
pub(crate) const EDNS_PAYLOAD: u16 = 1232;

/// SRV priority and weight: every target is equally preferred.
const SRV_PRIORITY: u16 = 0;
const SRV_WEIGHT: u16 = 100;

/// The UDP payload size every DNS client accepts, and the limit for clients without EDNS.
const CLASSIC_UDP_PAYLOAD: u16 = 512;

/// What to do with one query: a reply built from `records`, or forward it upstream.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Answer(Message),
    Forward,
}

/// What to do with one query: a reply built from `records`, or forward it upstream.
///
/// Names in the cluster domain are answered authoritatively (NXDOMAIN carries the zone's SOA);
/// names outside it are forwarded. Malformed queries get FORMERR, other opcodes NOTIMP.
pub fn answer(records: &Records, query: &Message) -> Reply {
    if query.message_type() != MessageType::Query {
        return Reply::Answer(error_reply(query, ResponseCode::FormErr));
    }
    if query.op_code() != OpCode::Query {
        return Reply::Answer(error_reply(query, ResponseCode::NotImp));
    }
    let [question] = query.queries() else {
        return Reply::Answer(error_reply(query, ResponseCode::FormErr));
    };
    if query.extensions().as_ref().is_some_and(|edns| edns.version() > 0) {
        return Reply::Answer(error_reply(query, ResponseCode::BADVERS));
    }
    if !records.in_zone(question.name()) {
        return Reply::Forward;
    }

    let mut reply = reply_to(query, ResponseCode::NoError);
    reply.set_authoritative(true);
    reply.add_query(question.clone());
    let node = lookup_key(question.name()).and_then(|key| records.get(&key).map(|node| (key, node)));
    match node {
        None => {
            reply.set_response_code(ResponseCode::NXDomain);
        }
        Some((key, node)) if matches!(question.query_class(), DNSClass::IN | DNSClass::ANY) => {
            add_answers(&mut reply, records, question, &key, node);
        }
        Some(_) => {}
    }
    if reply.answers().is_empty() {
        reply.add_name_server(Record::from_rdata(records.apex().clone(), TTL, RData::SOA(records.soa().clone())));
    }
    Reply::Answer(reply)
}

/// Puts the records of `node` that match the question in `reply` (answers and additionals).
fn add_answers(reply: &mut Message, records: &Records, question: &Query, key: &str, node: &Node) {
    let name = question.name();
    let qtype = question.query_type();
    if let Some(target) = &node.cname {
        reply.add_answer(Record::from_rdata(name.clone(), TTL, RData::CNAME(CNAME(target.clone()))));
        return;
    }
    let any = qtype == RecordType::ANY;
    if any || qtype == RecordType::A {
        add_addresses(reply, name, node, true, false);
    }
    if any || qtype == RecordType::AAAA {
        add_addresses(reply, name, node, false, false);
    }
    if any || qtype == RecordType::SRV {
        for srv in &node.srv {
            let rdata = SRV::new(SRV_PRIORITY, SRV_WEIGHT, srv.port, srv.target_name.clone());
            reply.add_answer(Record::from_rdata(name.clone(), TTL, RData::SRV(rdata)));
        }
        let mut targets: Vec<_> = node.srv.iter().map(|srv| (&srv.target, &srv.target_name)).collect();
        targets.sort_unstable();
        targets.dedup();
        for (target, target_name) in targets {
            if let Some(target_node) = records.get(target) {
                add_addresses(reply, target_name, target_node, true, true);
                add_addresses(reply, target_name, target_node, false, true);
            }
        }
    }
    if (any || qtype == RecordType::SOA) && key == records.apex_key() {
        reply.add_answer(Record::from_rdata(name.clone(), TTL, RData::SOA(records.soa().clone())));
    }
}

/// Adds the IPv4 (`v4`) or IPv6 addresses of `node` as records named `name`, to the answer or
/// the additional section.
fn add_addresses(reply: &mut Message, name: &Name, node: &Node, v4: bool, additional: bool) {
    let records: Vec<Record> = if v4 {
        node.v4.iter().map(|ip| Record::from_rdata(name.clone(), TTL, RData::A(A(*ip)))).collect()
    } else {
        node.v6.iter().map(|ip| Record::from_rdata(name.clone(), TTL, RData::AAAA(AAAA(*ip)))).collect()
    };
    if additional {
        reply.add_additionals(records);
    } else {
        reply.add_answers(records);
    }
}

/// A reply to `query` with no records: same id and opcode, RD and CD copied, RA set, and an OPT
/// record if the client sent one.
fn reply_to(query: &Message, code: ResponseCode) -> Message {
    let mut reply = Message::new();
    reply
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_recursion_desired(query.recursion_desired())
        .set_checking_disabled(query.checking_disabled())
        .set_recursion_available(true)
        .set_response_code(code);
    if query.extensions().is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD).set_version(0);
        reply.set_edns(edns);
    }
    reply
}

/// An error reply to `query` with `code`, carrying the question back when there is exactly one.
pub(crate) fn error_reply(query: &Message, code: ResponseCode) -> Message {
    let mut reply = reply_to(query, code);
    if let [question] = query.queries() {
        reply.add_query(question.clone());
    }
    reply
}

/// The largest reply this client takes over UDP: 512 bytes, or what its EDNS record advertises
/// up to [`EDNS_PAYLOAD`].
pub(crate) fn udp_limit(query: &Message) -> usize {
    let payload = query.extensions().as_ref().map_or(CLASSIC_UDP_PAYLOAD, |edns| edns.max_payload());
    usize::from(payload.clamp(CLASSIC_UDP_PAYLOAD, EDNS_PAYLOAD))
}

/// Encodes `reply`; if it is longer than `limit` bytes, encodes it again with TC set and without
/// records (question and OPT kept), so the client retries over TCP.
pub(crate) fn encode(reply: &Message, limit: usize) -> Result<Vec<u8>, ProtoError> {
    let bytes = reply.to_vec()?;
    if bytes.len() <= limit {
        return Ok(bytes);
    }
    reply.truncate().to_vec()
}

/// The reply to bytes that are not a DNS message: FORMERR (NOTIMP for an opcode other than QUERY)
/// with the client's id, or nothing when there is no header to answer or the bytes are a response.
pub(crate) fn reject_unparsable(bytes: &[u8]) -> Option<Vec<u8>> {
    let header = bytes.get(..12)?;
    let flags = header[2];
    if flags & 0x80 != 0 {
        return None;
    }
    let opcode = (flags >> 3) & 0x0f;
    let code = if opcode == 0 { ResponseCode::FormErr } else { ResponseCode::NotImp };
    let mut reply = vec![0u8; 12];
    reply[..2].copy_from_slice(&header[..2]);
    // QR, the opcode and RD from the query; RA set; the rest zero.
    reply[2] = 0x80 | (flags & 0x79);
    reply[3] = 0x80 | code.low();
    Some(reply)
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use serde_json::{Value, json};

    use super::*;

    fn service(value: Value) -> Arc<Service> {
        Arc::new(serde_json::from_value(value).expect("test Service"))
    }

    fn slice(value: Value) -> Arc<EndpointSlice> {
        Arc::new(serde_json::from_value(value).expect("test EndpointSlice"))
    }

    /// The zone every test asks: a dual-stack ClusterIP Service, an IPv4-only one, a headless
    /// StatefulSet-style Service with one ready and one not-ready endpoint, a headless one that
    /// publishes not-ready addresses, and an ExternalName.
    fn records() -> Records {
        let services = [
            service(json!({
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20", "fd00::20"],
                         "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                                   {"name": "dns", "port": 53, "protocol": "UDP"},
                                   {"port": 8080}]}
            })),
            service(json!({
                "metadata": {"name": "api", "namespace": "prod"},
                "spec": {"clusterIP": "10.96.0.30"}
            })),
            service(json!({
                "metadata": {"name": "db", "namespace": "default"},
                "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}
            })),
            service(json!({
                "metadata": {"name": "all", "namespace": "default"},
                "spec": {"clusterIP": "None", "publishNotReadyAddresses": true}
            })),
            service(json!({
                "metadata": {"name": "ext", "namespace": "default"},
                "spec": {"type": "ExternalName", "externalName": "example.com"}
            })),
        ];
        let slices = [
            slice(json!({
                "metadata": {"name": "db-abc", "namespace": "default",
                             "labels": {"kubernetes.io/service-name": "db"}},
                "addressType": "IPv4",
                "ports": [{"name": "pg", "port": 15432, "protocol": "TCP"}],
                "endpoints": [
                    {"addresses": ["10.1.0.5"], "hostname": "db-0", "conditions": {"ready": true}},
                    {"addresses": ["10.1.0.6"], "conditions": {}},
                    {"addresses": ["10.1.0.7"], "hostname": "db-2", "conditions": {"ready": false}}
                ]
            })),
            // The same endpoint seen in a second slice (as during a slice handover).
            slice(json!({
                "metadata": {"name": "db-def", "namespace": "default",
                             "labels": {"kubernetes.io/service-name": "db"}},
                "addressType": "IPv4",
                "ports": [{"name": "pg", "port": 15432, "protocol": "TCP"}],
                "endpoints": [{"addresses": ["10.1.0.5"], "hostname": "db-0"}]
            })),
            // Same Service name in another namespace: must not leak into default/db.
            slice(json!({
                "metadata": {"name": "db-xyz", "namespace": "other",
                             "labels": {"kubernetes.io/service-name": "db"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.9.9.9"]}]
            })),
            slice(json!({
                "metadata": {"name": "all-abc", "namespace": "default",
                             "labels": {"kubernetes.io/service-name": "all"}},
                "addressType": "IPv4",
                "endpoints": [
                    {"addresses": ["10.2.0.1"], "conditions": {"ready": true}},
                    {"addresses": ["10.2.0.2"], "conditions": {"ready": false}}
                ]
            })),
        ];
        Records::build("cluster.local", &services, &slices)
    }

    fn query(name: &str, qtype: RecordType) -> Message {
        let mut query = Message::new();
        query
            .set_id(4242)
            .set_recursion_desired(true)
            .add_query(Query::query(Name::from_ascii(name).expect("test name"), qtype));
        query
    }

    /// Asks `records` and expects an answer (not a forward).
    fn ask(records: &Records, query: &Message) -> Message {
        match answer(records, query) {
            Reply::Answer(reply) => reply,
            Reply::Forward => panic!("expected an answer, got a forward"),
        }
    }

    fn ips(records: &[Record]) -> Vec<IpAddr> {
        records
            .iter()
            .filter_map(|r| match r.data() {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                _ => None,
            })
            .collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test IP")
    }

    fn srvs(reply: &Message) -> Vec<(u16, u16, u16, String)> {
        reply
            .answers()
            .iter()
            .filter_map(|r| match r.data() {
                RData::SRV(srv) => Some((srv.priority(), srv.weight(), srv.port(), srv.target().to_ascii())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn cluster_ip_service_answers_its_ipv4_cluster_ip() {
        let reply = ask(&records(), &query("web.default.svc.cluster.local.", RecordType::A));
        assert_eq!(reply.response_code(), ResponseCode::NoError);
        assert_eq!(ips(reply.answers()), vec![ip("10.96.0.20")]);
        let record = &reply.answers()[0];
        assert_eq!(record.ttl(), 5);
        assert_eq!(record.name().to_ascii(), "web.default.svc.cluster.local.");
        assert!(reply.authoritative());
        assert!(reply.recursion_available());
        assert!(reply.recursion_desired());
        assert_eq!(reply.id(), 4242);
        assert_eq!(reply.message_type(), MessageType::Response);
        assert_eq!(reply.queries(), query("web.default.svc.cluster.local.", RecordType::A).queries());
    }

    #[test]
    fn dual_stack_service_answers_aaaa_with_its_ipv6_cluster_ip() {
        let reply = ask(&records(), &query("web.default.svc.cluster.local.", RecordType::AAAA));
        assert_eq!(ips(reply.answers()), vec![ip("fd00::20")]);
    }

    #[test]
    fn service_without_cluster_ips_list_falls_back_to_cluster_ip() {
        let reply = ask(&records(), &query("api.prod.svc.cluster.local.", RecordType::A));
        assert_eq!(ips(reply.answers()), vec![ip("10.96.0.30")]);
    }

    #[test]
    fn existing_names_without_the_asked_type_answer_nodata_with_soa() {
        let cases = [
            ("api.prod.svc.cluster.local.", RecordType::AAAA),
            ("api.prod.svc.cluster.local.", RecordType::TXT),
            ("web.default.svc.cluster.local.", RecordType::MX),
            ("db-0.db.default.svc.cluster.local.", RecordType::AAAA),
            // Parents of existing names.
            ("prod.svc.cluster.local.", RecordType::A),
            ("default.svc.cluster.local.", RecordType::AAAA),
            ("svc.cluster.local.", RecordType::A),
            ("cluster.local.", RecordType::A),
            ("_tcp.web.default.svc.cluster.local.", RecordType::SRV),
        ];
        let records = records();
        for (name, qtype) in cases {
            let reply = ask(&records, &query(name, qtype));
            assert_eq!(reply.response_code(), ResponseCode::NoError, "{name} {qtype}");
            assert!(reply.answers().is_empty(), "{name} {qtype}");
            assert!(reply.authoritative(), "{name} {qtype}");
            assert_eq!(reply.name_servers().len(), 1, "{name} {qtype}");
            assert_eq!(reply.name_servers()[0].record_type(), RecordType::SOA, "{name} {qtype}");
        }
    }

    #[test]
    fn unknown_names_in_the_domain_answer_nxdomain_with_soa() {
        let cases = [
            "nope.default.svc.cluster.local.",
            "web.nope.svc.cluster.local.",
            "nope.svc.cluster.local.",
            "x.web.default.svc.cluster.local.",
            "db-2.db.default.svc.cluster.local.",
            "10-1-0-7.db.default.svc.cluster.local.",
            "pod.cluster.local.",
            "_http._udp.web.default.svc.cluster.local.",
            "a\\.b.cluster.local.",
        ];
        let records = records();
        for name in cases {
            let reply = ask(&records, &query(name, RecordType::A));
            assert_eq!(reply.response_code(), ResponseCode::NXDomain, "{name}");
            assert!(reply.authoritative(), "{name}");
            assert!(reply.answers().is_empty(), "{name}");
            let [soa] = reply.name_servers() else { panic!("{name}: want one SOA, got {:?}", reply.name_servers()) };
            assert_eq!(soa.name().to_ascii(), "cluster.local.");
            assert_eq!(soa.ttl(), 5);
            let RData::SOA(soa) = soa.data() else { panic!("{name}: not an SOA") };
            assert_eq!(soa.mname().to_ascii(), "ns.dns.cluster.local.");
            assert_eq!(soa.rname().to_ascii(), "hostmaster.cluster.local.");
        }
    }

    #[test]
    fn headless_service_answers_ready_endpoint_addresses() {
        let reply = ask(&records(), &query("db.default.svc.cluster.local.", RecordType::A));
        assert_eq!(reply.response_code(), ResponseCode::NoError);
        assert_eq!(ips(reply.answers()), vec![ip("10.1.0.5"), ip("10.1.0.6")]);
    }

    #[test]
    fn headless_service_publishing_not_ready_addresses_answers_all_endpoints() {
        let reply = ask(&records(), &query("all.default.svc.cluster.local.", RecordType::A));
        assert_eq!(ips(reply.answers()), vec![ip("10.2.0.1"), ip("10.2.0.2")]);
    }

    #[test]
    fn headless_endpoints_answer_by_hostname_and_dashed_ip() {
        let records = records();
        let cases = [
            ("db-0.db.default.svc.cluster.local.", "10.1.0.5"),
            ("10-1-0-5.db.default.svc.cluster.local.", "10.1.0.5"),
            ("10-1-0-6.db.default.svc.cluster.local.", "10.1.0.6"),
            ("10-2-0-2.all.default.svc.cluster.local.", "10.2.0.2"),
        ];
        for (name, want) in cases {
            let reply = ask(&records, &query(name, RecordType::A));
            assert_eq!(ips(reply.answers()), vec![ip(want)], "{name}");
        }
    }

    #[test]
    fn dual_stack_headless_endpoints_answer_aaaa_by_hostname_and_dashed_ip() {
        let services = [service(json!({
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}
        }))];
        let slices = [
            slice(json!({
                "metadata": {"name": "db-v4", "namespace": "default", "labels": {"kubernetes.io/service-name": "db"}},
                "addressType": "IPv4",
                "ports": [{"name": "pg", "port": 5432}],
                "endpoints": [{"addresses": ["10.1.0.5"], "hostname": "db-0"}]
            })),
            slice(json!({
                "metadata": {"name": "db-v6", "namespace": "default", "labels": {"kubernetes.io/service-name": "db"}},
                "addressType": "IPv6",
                "ports": [{"name": "pg", "port": 5432}],
                "endpoints": [{"addresses": ["fd00::5"], "hostname": "db-0"}]
            })),
        ];
        let records = Records::build("cluster.local", &services, &slices);
        let reply = ask(&records, &query("db-0.db.default.svc.cluster.local.", RecordType::AAAA));
        assert_eq!(ips(reply.answers()), vec![ip("fd00::5")]);
        let reply = ask(&records, &query("fd00--5.db.default.svc.cluster.local.", RecordType::AAAA));
        assert_eq!(ips(reply.answers()), vec![ip("fd00::5")]);
        // One SRV record for the pod, with both its addresses in the additional section.
        let reply = ask(&records, &query("_pg._tcp.db.default.svc.cluster.local.", RecordType::SRV));
        assert_eq!(srvs(&reply), vec![(0, 100, 5432, "db-0.db.default.svc.cluster.local.".to_owned())]);
        assert_eq!(ips(reply.additionals()), vec![ip("10.1.0.5"), ip("fd00::5")]);
    }

    #[test]
    fn srv_of_a_cluster_ip_service_points_at_the_service() {
        let records = records();
        let reply = ask(&records, &query("_http._tcp.web.default.svc.cluster.local.", RecordType::SRV));
        assert_eq!(srvs(&reply), vec![(0, 100, 80, "web.default.svc.cluster.local.".to_owned())]);
        assert_eq!(ips(reply.additionals()), vec![ip("10.96.0.20"), ip("fd00::20")]);

        let reply = ask(&records, &query("_dns._udp.web.default.svc.cluster.local.", RecordType::SRV));
        assert_eq!(srvs(&reply), vec![(0, 100, 53, "web.default.svc.cluster.local.".to_owned())]);
    }

    #[test]
    fn srv_of_a_headless_service_lists_each_ready_endpoint() {
        let reply = ask(&records(), &query("_pg._tcp.db.default.svc.cluster.local.", RecordType::SRV));
        assert_eq!(
            srvs(&reply),
            vec![
                (0, 100, 15432, "10-1-0-6.db.default.svc.cluster.local.".to_owned()),
                (0, 100, 15432, "db-0.db.default.svc.cluster.local.".to_owned()),
            ]
        );
        let additional: Vec<(String, IpAddr)> =
            reply.additionals().iter().map(|r| r.name().to_ascii()).zip(ips(reply.additionals())).collect();
        assert_eq!(
            additional,
            vec![
                ("10-1-0-6.db.default.svc.cluster.local.".to_owned(), ip("10.1.0.6")),
                ("db-0.db.default.svc.cluster.local.".to_owned(), ip("10.1.0.5")),
            ]
        );
    }

    #[test]
    fn external_name_service_answers_a_cname_for_any_type() {
        let records = records();
        for qtype in [RecordType::A, RecordType::AAAA, RecordType::CNAME, RecordType::TXT] {
            let reply = ask(&records, &query("ext.default.svc.cluster.local.", qtype));
            assert_eq!(reply.response_code(), ResponseCode::NoError);
            let [record] = reply.answers() else { panic!("{qtype}: want one CNAME, got {:?}", reply.answers()) };
            assert_eq!(record.data(), &RData::CNAME(CNAME(Name::from_ascii("example.com.").expect("name"))));
        }
    }

    #[test]
    fn names_match_case_insensitively_and_answer_with_the_question_spelling() {
        let reply = ask(&records(), &query("WeB.DeFault.SVC.Cluster.LOCAL.", RecordType::A));
        assert_eq!(ips(reply.answers()), vec![ip("10.96.0.20")]);
        assert_eq!(reply.answers()[0].name().to_ascii(), "WeB.DeFault.SVC.Cluster.LOCAL.");
        assert_eq!(reply.queries()[0].name().to_ascii(), "WeB.DeFault.SVC.Cluster.LOCAL.");
    }

    #[test]
    fn names_outside_the_domain_are_forwarded() {
        let records = records();
        for name in ["example.com.", "local.", "cluster.local.example.com.", "4.3.2.1.in-addr.arpa.", "xcluster.local."]
        {
            assert_eq!(answer(&records, &query(name, RecordType::A)), Reply::Forward, "{name}");
        }
    }

    #[test]
    fn malformed_queries_get_formerr_and_other_opcodes_notimp() {
        let records = records();
        let mut no_question = Message::new();
        no_question.set_id(7);
        let mut two_questions = query("web.default.svc.cluster.local.", RecordType::A);
        two_questions
            .add_query(Query::query(Name::from_ascii("api.prod.svc.cluster.local.").expect("name"), RecordType::A));
        let mut a_response = query("web.default.svc.cluster.local.", RecordType::A);
        a_response.set_message_type(MessageType::Response);
        let mut update = query("web.default.svc.cluster.local.", RecordType::A);
        update.set_op_code(OpCode::Update);
        let mut status = Message::new();
        status.set_op_code(OpCode::Status);

        let cases = [
            (no_question, ResponseCode::FormErr),
            (two_questions, ResponseCode::FormErr),
            (a_response, ResponseCode::FormErr),
            (update, ResponseCode::NotImp),
            (status, ResponseCode::NotImp),
        ];
        for (query, want) in cases {
            let reply = ask(&records, &query);
            assert_eq!(reply.response_code(), want, "{query:?}");
            assert_eq!(reply.id(), query.id());
            assert_eq!(reply.op_code(), query.op_code());
            assert_eq!(reply.message_type(), MessageType::Response);
            assert!(reply.answers().is_empty());
        }
    }

    #[test]
    fn edns_queries_get_an_opt_record_and_unknown_edns_versions_get_badvers() {
        let records = records();
        let mut with_edns = query("web.default.svc.cluster.local.", RecordType::A);
        with_edns.set_edns(Edns::new());
        let reply = ask(&records, &with_edns);
        assert_eq!(reply.extensions().as_ref().map(Edns::max_payload), Some(EDNS_PAYLOAD));
        assert_eq!(ips(reply.answers()), vec![ip("10.96.0.20")]);

        let mut edns1 = Edns::new();
        edns1.set_version(1);
        with_edns.set_edns(edns1);
        let reply = ask(&records, &with_edns);
        assert_eq!(reply.response_code(), ResponseCode::BADVERS);
        // The extended code (16, which hickory decodes as its twin BADSIG) survives the wire.
        let wire = Message::from_vec(&reply.to_vec().expect("encode")).expect("decode");
        assert_eq!(u16::from(wire.response_code()), 16);
    }

    #[test]
    fn bytes_that_do_not_parse_get_formerr_with_the_client_id() {
        let reply = reject_unparsable(&[0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xff]).expect("a reply");
        let reply = Message::from_vec(&reply).expect("decode");
        assert_eq!(reply.id(), 0xabcd);
        assert_eq!(reply.response_code(), ResponseCode::FormErr);
        assert_eq!(reply.message_type(), MessageType::Response);
        assert!(reply.recursion_desired());

        // Opcode 5 (UPDATE).
        let reply = reject_unparsable(&[0, 1, 0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0]).expect("a reply");
        let reply = Message::from_vec(&reply).expect("decode");
        assert_eq!(reply.response_code(), ResponseCode::NotImp);
        assert_eq!(reply.op_code(), OpCode::Update);

        assert_eq!(reject_unparsable(&[1, 2, 3]), None, "too short for a header");
        assert_eq!(reject_unparsable(&[0, 1, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None, "a response");
    }

    /// A headless Service with `n` ready endpoints 10.3.x.y.
    fn big_headless(n: usize) -> Records {
        let endpoints: Vec<Value> = (0..n)
            .map(|i| json!({"addresses": [Ipv4Addr::new(10, 3, (i / 256) as u8, (i % 256) as u8).to_string()]}))
            .collect();
        let services = [service(json!({
            "metadata": {"name": "big", "namespace": "default"},
            "spec": {"clusterIP": "None"}
        }))];
        let slices = [slice(json!({
            "metadata": {"name": "big-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "big"}},
            "addressType": "IPv4",
            "endpoints": endpoints
        }))];
        Records::build("cluster.local", &services, &slices)
    }

    #[test]
    fn udp_replies_over_the_client_limit_are_truncated() {
        let records = big_headless(40); // 40 A records: about 700 bytes.
        let plain = query("big.default.svc.cluster.local.", RecordType::A);
        let reply = ask(&records, &plain);
        assert_eq!(reply.answers().len(), 40);

        let wire = encode(&reply, udp_limit(&plain)).expect("encode");
        assert!(wire.len() <= 512);
        let decoded = Message::from_vec(&wire).expect("decode");
        assert!(decoded.truncated());
        assert!(decoded.answers().is_empty());
        assert_eq!(decoded.queries(), plain.queries());
        assert_eq!(decoded.id(), 4242);

        // With EDNS the client takes more, and the same reply fits.
        let mut with_edns = plain.clone();
        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        with_edns.set_edns(edns);
        assert_eq!(udp_limit(&with_edns), usize::from(EDNS_PAYLOAD));
        let wire = encode(&ask(&records, &with_edns), udp_limit(&with_edns)).expect("encode");
        let decoded = Message::from_vec(&wire).expect("decode");
        assert!(!decoded.truncated());
        assert_eq!(decoded.answers().len(), 40);

        // Past our own EDNS limit it is truncated again, OPT kept; over TCP it all goes.
        let records = big_headless(100);
        let reply = ask(&records, &with_edns);
        let decoded = Message::from_vec(&encode(&reply, udp_limit(&with_edns)).expect("encode")).expect("decode");
        assert!(decoded.truncated());
        assert!(decoded.extensions().is_some());
        let decoded = Message::from_vec(&encode(&reply, usize::from(u16::MAX)).expect("encode")).expect("decode");
        assert!(!decoded.truncated());
        assert_eq!(decoded.answers().len(), 100);
    }

    #[test]
    fn soa_at_the_apex_is_answered() {
        let reply = ask(&records(), &query("Cluster.Local.", RecordType::SOA));
        let [record] = reply.answers() else { panic!("want one SOA, got {:?}", reply.answers()) };
        assert_eq!(record.record_type(), RecordType::SOA);
        assert!(reply.name_servers().is_empty());
    }
}
