//! What `bench/run` and the instruction-count gate (`bench/instructions`) share: the route
//! table they measure at 10, 1k, 10k routes.

/// `n` HTTPRoutes on listener `bench/http` (backend Service `backend`): one hostname each
/// (`r<i>.bench.example.com`), prefixes, every 10th with a header match and every 50th with
/// a regular expression path (but the middle one). The last route redirects (302), so its answer says the whole
/// table is in.
pub fn scale_routes(n: usize) -> String {
    let mut yaml = String::new();
    for i in 0..n {
        // The route in the middle (`scale_target`) is a plain prefix at every size, so
        // sizes compare the lookup, not the kind of match.
        let path = if i % 50 == 0 && i != n / 2 {
            format!("{{type: RegularExpression, value: '/p{}/[a-z]+'}}", i % 100)
        } else {
            format!("{{type: PathPrefix, value: /p{}}}", i % 100)
        };
        let headers = if i % 10 == 0 && i != n / 2 {
            format!(", headers: [{{name: x-variant, value: v{i}}}]")
        } else {
            String::new()
        };
        let action = if i == n - 1 {
            "filters: [{type: RequestRedirect, requestRedirect: {statusCode: 302, hostname: done.example.com}}]"
        } else {
            "backendRefs: [{name: backend, port: 80}]"
        };
        yaml.push_str(&format!(
            "---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r{i}, namespace: default}}
spec:
  parentRefs: [{{name: bench, sectionName: http}}]
  hostnames: [r{i}.bench.example.com]
  rules:
  - matches: [{{path: {path}{headers}}}]
    {action}
"
        ));
    }
    yaml
}

/// The route in the middle of a table of `n`: its Host and path.
pub fn scale_target(n: usize) -> (String, String) {
    let i = n / 2;
    (
        format!("r{i}.bench.example.com"),
        format!("/p{}/x", i % 100),
    )
}

/// Service `backend` (port 80) and its EndpointSlice: one endpoint, 127.0.0.1:`port`.
pub fn backend_service(port: u16) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: backend, namespace: default}}
spec:
  ports: [{{name: http, port: 80}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: backend
  namespace: default
  labels: {{kubernetes.io/service-name: backend}}
addressType: IPv4
ports: [{{name: http, port: {port}}}]
endpoints: [{{addresses: ['127.0.0.1']}}]
"
    )
}
