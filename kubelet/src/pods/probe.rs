//! Liveness, readiness and startup probes: httpGet, tcpSocket and exec, with upstream's timing
//! fields and thresholds. Running one is I/O; what a result means is the pure [`Tracker`].

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::docker::Docker;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }

    pub fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            Kind::Startup => c.startup_probe.as_ref(),
            Kind::Liveness => c.liveness_probe.as_ref(),
            Kind::Readiness => c.readiness_probe.as_ref(),
        }
    }
}

/// Consecutive results of one probe of one container instance, and what they add up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracker {
    /// The probe's verdict: readiness and startup start false, liveness true.
    pub passing: bool,
    successes: i32,
    failures: i32,
    pub last_run: Option<Instant>,
}

impl Tracker {
    pub fn new(kind: Kind) -> Self {
        Tracker { passing: kind == Kind::Liveness, successes: 0, failures: 0, last_run: None }
    }

    /// Records one result; the verdict flips after successThreshold successes or
    /// failureThreshold failures in a row.
    pub fn record(&mut self, probe: &Probe, success: bool, now: Instant) {
        self.last_run = Some(now);
        if success {
            self.successes += 1;
            self.failures = 0;
            if self.successes >= probe.success_threshold.unwrap_or(1).max(1) {
                self.passing = true;
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.failures >= probe.failure_threshold.unwrap_or(3).max(1) {
                self.passing = false;
            }
        }
    }

    /// Whether failureThreshold failures in a row have been seen.
    pub fn exhausted(&self, probe: &Probe) -> bool {
        self.failures >= probe.failure_threshold.unwrap_or(3).max(1)
    }

    /// Whether the probe should run now, for a container that started `running_for` ago.
    pub fn due(&self, probe: &Probe, running_for: Duration, now: Instant) -> bool {
        let delay = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
        running_for >= delay && self.last_run.is_none_or(|t| now.duration_since(t) >= period)
    }
}

/// Runs a probe once against a container; `Err` carries the failure's message.
pub async fn run(docker: &Docker, probe: &Probe, c: &Container, ip: &str, container_id: &str) -> Result<(), String> {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    let attempt = async {
        if let Some(http) = &probe.http_get {
            let port = port(&http.port, c)?;
            let host = http.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| ip.to_string());
            if http.scheme.as_deref() == Some("HTTPS") {
                return Err("HTTPS probes are not supported yet".to_string());
            }
            http_get(&host, port, http.path.as_deref().unwrap_or("/"), http.http_headers.iter().flatten()).await
        } else if let Some(tcp) = &probe.tcp_socket {
            let port = port(&tcp.port, c)?;
            let host = tcp.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| ip.to_string());
            tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map(drop)
                .map_err(|e| format!("dial tcp {host}:{port}: {e}"))
        } else if let Some(exec) = &probe.exec {
            let command = exec.command.clone().unwrap_or_default();
            match docker.exec(container_id, command).await {
                Ok((0, _)) => Ok(()),
                Ok((code, output)) => Err(format!("command exited with {code}: {}", output.trim())),
                Err(e) => Err(e.to_string()),
            }
        } else {
            Err("the probe has no handler".to_string())
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("timeout after {}s", timeout.as_secs())),
    }
}

/// A port by number, or by the name of one of the container's ports.
fn port(port: &IntOrString, c: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("port {n} out of range")),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("port {name:?} not found in the container's ports")),
    }
}

/// A GET whose status must be 200–399, as upstream's prober.
async fn http_get<'a>(
    host: &str,
    port: u16,
    path: &str,
    headers: impl Iterator<Item = &'a k8s_openapi::api::core::v1::HTTPHeader>,
) -> Result<(), String> {
    let mut stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("Get \"http://{host}:{port}{path}\": {e}"))?;
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for h in headers {
        request.push_str(&format!("{}: {}\r\n", h.name, h.value));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut head = vec![0u8; 64];
    let n = stream.read(&mut head).await.map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&head[..n]);
    let code: u16 = line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or("malformed HTTP response")?;
    if (200..400).contains(&code) { Ok(()) } else { Err(format!("HTTP probe failed with statuscode: {code}")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(success: i32, failure: i32) -> Probe {
        Probe {
            success_threshold: Some(success),
            failure_threshold: Some(failure),
            period_seconds: Some(5),
            ..Default::default()
        }
    }

    #[test]
    fn verdicts_flip_after_their_thresholds() {
        let p = probe(2, 3);
        let now = Instant::now();
        let mut ready = Tracker::new(Kind::Readiness);
        assert!(!ready.passing);
        ready.record(&p, true, now);
        assert!(!ready.passing, "one success of two");
        ready.record(&p, true, now);
        assert!(ready.passing);
        ready.record(&p, false, now);
        ready.record(&p, false, now);
        assert!(ready.passing, "two failures of three");
        ready.record(&p, true, now);
        ready.record(&p, false, now);
        ready.record(&p, false, now);
        assert!(ready.passing, "a success in between resets the count");
        ready.record(&p, false, now);
        assert!(!ready.passing);
        let mut live = Tracker::new(Kind::Liveness);
        assert!(live.passing);
        for _ in 0..3 {
            live.record(&p, false, now);
        }
        assert!(!live.passing);
    }

    #[test]
    fn probes_wait_for_the_initial_delay_then_the_period() {
        let mut p = probe(1, 1);
        p.initial_delay_seconds = Some(3);
        let now = Instant::now();
        let mut t = Tracker::new(Kind::Readiness);
        assert!(!t.due(&p, Duration::from_secs(2), now));
        assert!(t.due(&p, Duration::from_secs(3), now));
        t.record(&p, true, now);
        assert!(!t.due(&p, Duration::from_secs(4), now + Duration::from_secs(4)));
        assert!(t.due(&p, Duration::from_secs(8), now + Duration::from_secs(5)));
    }

    #[test]
    fn named_ports_resolve_through_the_container() {
        let c: Container = serde_json::from_value(
            serde_json::json!({"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}),
        )
        .expect("container");
        assert_eq!(port(&IntOrString::String("http".into()), &c), Ok(8080));
        assert_eq!(port(&IntOrString::Int(81), &c), Ok(81));
        assert!(port(&IntOrString::String("grpc".into()), &c).is_err());
    }
}
