//! `gatehouse-echo --listen 127.0.0.1:9101 --pod app-v1`: an echo backend for examples.

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let listen = arg(&args, "--listen").unwrap_or_else(|| "127.0.0.1:3000".into());
    let pod = arg(&args, "--pod").unwrap_or_else(|| "echo".into());
    let id = gatehouse_echo::Identity {
        service: arg(&args, "--service").unwrap_or_else(|| pod.clone()),
        namespace: arg(&args, "--namespace").unwrap_or_else(|| "default".into()),
        pod,
    };
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| anyhow::anyhow!("listen {listen}: {e}"))?;
    eprintln!("echo {} listening on {listen}", id.pod);
    gatehouse_echo::serve(listener, id).await;
    Ok(())
}
