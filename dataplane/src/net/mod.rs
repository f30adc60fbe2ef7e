//! Sockets and streams: our accept loops (`listeners`), HTTP/2 client connections (`h2`:
//! the Gateway's idle timeout, PINGs), TLS termination by SNI (`tls`),
//! TLS to backends (`upstream_tls`), the write buffer under each pingora session
//! (`coalesce`), the send-timeout watch on backend sockets (`send_watch`) and the PROXY
//! protocol header a load balancer may send first (`proxy_protocol`); and the process's
//! open-file limit (`raise_open_file_limit`).

pub mod coalesce;
pub mod h2;
pub mod listeners;
pub mod proxy_protocol;
pub mod send_watch;
pub mod tls;
pub mod upstream_tls;

/// Raises the soft limit on open files to the hard one, as nginx's `worker_rlimit_nofile`
/// and Go's runtime do: every client and backend connection is a file, and container
/// runtimes often start processes with a soft limit of 1,024 (a data plane would refuse
/// connections long before `maxConnections`). Returns the limit now in force.
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write only the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            limit = raised;
        }
    }
    Ok(limit.rlim_cur)
}
