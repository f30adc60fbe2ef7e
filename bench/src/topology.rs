//! Where everything runs: the backend's port, the cores the proxies and the load share,
//! and the three proxies under test with their HTTP and HTTPS ports.

pub const BACKEND: u16 = 19000;
pub const PROXY_CORE: &str = "0";
pub const LOAD_CORE: &str = "1";

/// A proxy under test: its HTTP and HTTPS ports.
#[derive(Clone, Copy)]
pub struct Proxy {
    pub name: &'static str,
    pub http: u16,
    pub https: u16,
}

pub const PROXIES: [Proxy; 3] = [
    Proxy {
        name: "gatehouse",
        http: 18080,
        https: 18443,
    },
    Proxy {
        name: "nginx",
        http: 28080,
        https: 28443,
    },
    Proxy {
        name: "haproxy",
        http: 38080,
        https: 38443,
    },
];
