//! A TCP proxy on 127.0.0.1 in front of the test stack's API server that can cut every open
//! connection on demand, as a network blip or an API server restart would, without touching
//! the shared stack. TLS passes through untouched (the server's certificate names 127.0.0.1,
//! whatever the port), so clients built through it behave exactly like direct ones.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::cluster;

/// A running proxy; stops accepting when dropped.
pub struct CutProxy {
    addr: SocketAddr,
    cut: watch::Sender<u64>,
    accepted: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    /// Starts a proxy to the stack's API server.
    pub async fn start() -> CutProxy {
        let upstream = cluster()
            .var("FERRY_TEST_APISERVER")
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("addr");
        let (cut, cut_rx) = watch::channel(0u64);
        let accepted = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let upstream = upstream.clone();
                let mut cut = cut_rx.clone();
                cut.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                    // Dropping both ends closes them abruptly (no TLS close_notify).
                });
            }
        });
        CutProxy {
            addr,
            cut,
            accepted,
            task,
        }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Closes every connection open now; later connections go through again.
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    /// How many connections the proxy accepted so far.
    pub fn accepted(&self) -> u32 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// An admin kube client through the proxy.
    pub async fn client(&self) -> Client {
        let mut config = Config::from_custom_kubeconfig(self.kubeconfig_value(), &admin())
            .await
            .expect("kubeconfig");
        config.cluster_url = self.url().parse().expect("proxy url");
        Client::try_from(config).expect("client through the proxy")
    }

    /// Writes a copy of the stack's kubeconfig whose clusters point at the proxy into `dir`.
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig-through-proxy");
        let text = serde_json::to_string(&self.kubeconfig_value()).expect("kubeconfig as JSON");
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    /// The stack's kubeconfig (file paths made absolute by kube) with every server replaced.
    fn kubeconfig_value(&self) -> Kubeconfig {
        let mut kubeconfig =
            Kubeconfig::read_from(cluster().kubeconfig()).expect("read the stack's kubeconfig");
        for named in &mut kubeconfig.clusters {
            if let Some(c) = named.cluster.as_mut() {
                c.server = Some(self.url());
            }
        }
        kubeconfig
    }
}

fn admin() -> KubeConfigOptions {
    KubeConfigOptions {
        context: Some(cluster().var("FERRY_TEST_CONTEXT").to_string()),
        cluster: None,
        user: None,
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}
