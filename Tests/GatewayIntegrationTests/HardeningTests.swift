import DemoUpstream
import Foundation
import Testing
import TestSupport

/// Requests crafted to slip past routing, authentication or the parser, over real sockets.
@Suite struct HardeningTests {
    static let protectedRoutes = #"""
        [{ "name": "admin", "match": { "path_prefix": "/admin" }, "upstream": "demo", "auth": { "require": ["api_key"] } },
         { "name": "public", "upstream": "demo" }]
        """#
    static let top = #""auth": { "api_keys": [{ "id": "demo", "sha256": "\#(OperationsTests.demoKeyHash)" }] },"#

    // Dot segments, encoded dots, doubled slashes and case changes cannot reach /admin without its key;
    // the upstream sees the normalised path that was matched; encoded slashes and bad escapes are 400.
    @Test func pathTricksCannotBypassARoute() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: Self.protectedRoutes, top: Self.top), upstreams: upstreams) { test in
                for attack in ["/public/../admin/x", "/public/%2e%2e/admin/x", "/public/%2E%2E/admin/x", "//admin/x", "/ADMIN/x",
                               "/./admin/x", "/Admin/x", "/public/..%2fadmin/x"] {
                    let response = try await test.request("GET", attack)
                    #expect([401, 400].contains(response.status), "\(attack) -> \(response.status)")
                }
                #expect(try await test.request("GET", "/admin%2Fx").status == 400)
                #expect(try await test.request("GET", "/a%zz").status == 400)
                #expect(try await test.request("GET", "/a%00b").status == 400)
                let normalised = try await test.request("GET", "/public/./a/../b//c?q=%2e%2e")
                #expect(normalised.json["uri"] as? String == "/public/b/c?q=%2e%2e")
                let keyed = try await test.request("GET", "/public/../admin/x", headers: [("X-API-Key", "demo-key-not-for-production")])
                #expect(keyed.status == 200)
                #expect(keyed.json["path"] as? String == "/admin/x")
            }
        }
    }
}
