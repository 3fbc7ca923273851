import DemoUpstream
import Foundation
import NIOCore
import NIOSSL
import Testing
import TestSupport

/// TLS termination and HTTP/2 over real handshakes on 127.0.0.1, with certificates made by openssl per test.
@Suite(.serialized) struct TLSTests {
    /// One TLS listener (port 0) with `tls` settings, a plaintext one, one upstream, one route.
    static func config(tls: String, upstream: String, upstreamExtra: String = "", plainExtra: String = "") -> String {
        """
        { "workers": 1,
          "listeners": [{ "name": "tls", "address": "127.0.0.1", "port": 0, "tls": \(tls) },
                        { "name": "plain", "address": "127.0.0.1", "port": 0 \(plainExtra) }],
          "upstreams": { "demo": { "targets": ["\(upstream)"] \(upstreamExtra) } },
          "routes": [{ "name": "all", "upstream": "demo" }] }
        """
    }

    static func certificates(_ entries: [(cert: String, key: String, names: [String])]) -> String {
        let list = entries.map { entry in
            let names = entry.names.map { "\"\($0)\"" }.joined(separator: ", ")
            return #"{ "cert": "\#(entry.cert)", "key": "\#(entry.key)", "server_names": [\#(names)] }"#
        }.joined(separator: ", ")
        return "[\(list)]"
    }

    /// A client that trusts `pki`'s CA; `only` pins one protocol version.
    static func client(trusting pki: TestPKI, only version: TLSVersion? = nil) -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .file(pki.caFile)
        configuration.applicationProtocols = ["http/1.1"]
        if let version {
            configuration.minimumTLSVersion = version
            configuration.maximumTLSVersion = version
        }
        return configuration
    }

    static func served(_ client: RawClient) async throws -> String { names(of: try await client.peerCertificate()) }

    /// Sends one GET on an open connection and reads the answer.
    /// A client that trusts `pki`'s CA and presents `identity`'s certificate, when given.
    static func client(trusting pki: TestPKI, presenting identity: (cert: String, key: String)?) throws -> TLSConfiguration {
        var configuration = client(trusting: pki)
        if let identity {
            configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(identity.cert).map { .certificate($0) }
            configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: identity.key, format: .pem))
        }
        return configuration
    }

    static func get(_ client: RawClient, _ path: String = "/echo", host: String = "localhost", headers: String = "") async throws -> TestResponse {
        try await client.send("GET \(path) HTTP/1.1\r\nHost: \(host)\r\n\(headers)\r\n")
        return try await client.readResponse()
    }

    static func names(of certificate: NIOSSLCertificate?) -> String { certificate.map { "\($0)" } ?? "none" }

    // A TLS listener behind a TCP load balancer: the PROXY header comes in the clear, then the handshake.
    @Test func proxyProtocolBeforeTheHandshake() async throws {
        let pki = try TestPKI()
        let server = try pki.issueServer("server", names: ["localhost"])
        try await withUpstreams { upstreams in
            let tls = #"{ "certificates": \#(Self.certificates([(server.cert, server.key, ["localhost"])])) }"#
            let config = Self.config(tls: tls, upstream: "http://127.0.0.1:\(upstreams[0].port)")
                .replacingOccurrences(of: #""tls": {"#, with: #""proxy_protocol": true, "tls": {"#)
                .replacingOccurrences(of: #"{ "workers": 1,"#, with: #"{ "workers": 1, "trusted_proxies": ["127.0.0.1"],"#)
            try await withGateway(config) { gateway in
                let header = Array("PROXY TCP4 198.51.100.20 127.0.0.1 40000 443\r\n".utf8)
                let client = try await RawClient.connectTLS(
                    port: gateway.gateway.listeners[0].port, configuration: Self.client(trusting: pki), serverName: "localhost", preamble: header)
                let response = try await Self.get(client)
                await client.close()
                #expect(response.status == 200)
                #expect(response.echoedHeaders["x-forwarded-for"] == "198.51.100.20")
                #expect(response.echoedHeaders["x-forwarded-proto"] == "https")
            }
        }
    }

    // tls.passthrough: a connection whose ClientHello names a passed-through server reaches the backend still encrypted
    // (the client sees the backend's own certificate, and its HTTP is the backend's), while other names are terminated
    // by the listener as usual; a listener with passthrough rules alone closes connections for other names; with
    // proxy_protocol the backend learns the client's address first. Each relayed connection is logged and counted.
    @Test(.timeLimit(.minutes(1))) func passthroughBySNI() async throws {
        let pki = try TestPKI()
        let gatewayCert = try pki.issueServer("gateway", names: ["api.gateway.test"])
        let backendCert = try pki.issueServer("backend", names: ["db.passthrough.test", "x.apps.passthrough.test"])
        let backendPort = try await RedisServer.freePort()
        let backend = Process()
        backend.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        backend.arguments = ["s_server", "-accept", "127.0.0.1:\(backendPort)", "-cert", backendCert.cert, "-key", backendCert.key, "-www", "-quiet"]
        backend.standardOutput = FileHandle.nullDevice
        backend.standardError = FileHandle.nullDevice
        try backend.run()
        defer { kill(backend.processIdentifier, SIGKILL) }  // SIGKILL: the test process ignores SIGTERM, and so would its children
        // A backend that records the PROXY line it is sent first, then hangs up.
        let recorderPort = try await RedisServer.freePort()
        let recorded = pki.path("proxy-line.txt")
        let recorder = Process()
        recorder.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        recorder.arguments = ["-c", """
            import socket, sys
            server = socket.socket(); server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", \(recorderPort))); server.listen(1)
            connection, _ = server.accept(); data = b""
            while b"\\r\\n" not in data:
                chunk = connection.recv(4096)
                if not chunk: break
                data += chunk
            open(sys.argv[1], "wb").write(data.split(b"\\r\\n")[0]); connection.close()
            """, recorded]
        try recorder.run()
        defer { kill(recorder.processIdentifier, SIGKILL) }  // SIGKILL: the test process ignores SIGTERM, and so would its children
        // s_server serves one connection at a time: the probe hangs up at once.
        let waited = try await OperationsTests.poll(until: true) {
            guard let probe = try? await RawClient.connect(port: backendPort) else { return false }
            await probe.close()
            return true
        }
        #expect(waited, "openssl s_server did not start")
        try await withUpstreams { upstreams in
            let passthrough = """
                [{ "server_names": ["db.passthrough.test", "*.apps.passthrough.test"], "upstream": "backend" },
                 { "server_names": ["proxied.passthrough.test"], "upstream": "recorder", "proxy_protocol": true },
                 { "server_names": ["down.passthrough.test"], "upstream": "down" }]
                """
            let config = """
                { "workers": 1, "admin": { "address": "127.0.0.1", "port": 0 },
                  "listeners": [{ "name": "edge", "address": "127.0.0.1", "port": 0,
                                  "tls": { "certificates": \(Self.certificates([(gatewayCert.cert, gatewayCert.key, ["api.gateway.test"])])), "passthrough": \(passthrough) } },
                                { "name": "relay-only", "address": "127.0.0.1", "port": 0,
                                  "tls": { "passthrough": [{ "server_names": ["db.passthrough.test"], "upstream": "backend" }] } }],
                  "upstreams": { "demo": { "targets": ["http://127.0.0.1:\(upstreams[0].port)"] },
                                 "backend": { "targets": ["https://127.0.0.1:\(backendPort)"] },
                                 "recorder": { "targets": ["https://127.0.0.1:\(recorderPort)"] },
                                 "down": { "targets": ["https://127.0.0.1:\(try await RedisServer.freePort())"] } },
                  "routes": [{ "name": "all", "upstream": "demo" }] }
                """
            try await withGateway(config) { gateway in
                let (edge, relayOnly) = (gateway.gateway.listeners[0].port, gateway.gateway.listeners[1].port)
                func subject(_ port: Int, _ name: String) async throws -> String {
                    try await shell(
                        "echo | openssl s_client -connect 127.0.0.1:\(port) -servername \(name) 2>/dev/null | openssl x509 -noout -ext subjectAltName 2>/dev/null",
                        timeout: .seconds(10)
                    ).stdout
                }
                #expect(try await subject(edge, "db.passthrough.test").contains("DNS:db.passthrough.test"), "the backend's certificate")
                #expect(try await subject(edge, "x.apps.passthrough.test").contains("DNS:db.passthrough.test"), "a wildcard rule")
                #expect(try await subject(edge, "api.gateway.test").contains("DNS:api.gateway.test"), "terminated by the gateway")
                let relayed = try await shell(
                    "curl -s --cacert \(pki.caFile) --resolve db.passthrough.test:\(edge):127.0.0.1 https://db.passthrough.test:\(edge)/",
                    timeout: .seconds(10))
                #expect(relayed.stdout.contains("s_server"), "the backend answered: \(relayed.stdout.prefix(200)) \(relayed.stderr)")
                let terminated = try await shell(
                    "curl -s --cacert \(pki.caFile) --resolve api.gateway.test:\(edge):127.0.0.1 https://api.gateway.test:\(edge)/echo -o /dev/null -w '%{http_code}'",
                    timeout: .seconds(10))
                #expect(terminated.stdout == "200")
                #expect(try await subject(relayOnly, "db.passthrough.test").contains("DNS:db.passthrough.test"))
                #expect(try await subject(relayOnly, "api.gateway.test").isEmpty, "no certificate of its own: closed")

                _ = try await shell("echo | openssl s_client -connect 127.0.0.1:\(edge) -servername proxied.passthrough.test >/dev/null 2>&1", timeout: .seconds(10))
                let line = try await OperationsTests.poll(until: true) { FileManager.default.fileExists(atPath: recorded) }
                let text = (try? String(contentsOfFile: recorded, encoding: .utf8)) ?? ""
                #expect(line && text.hasPrefix("PROXY TCP4 127.0.0.1 127.0.0.1 ") && text.hasSuffix(" \(edge)"), "\(text)")

                let logged = try await OperationsTests.poll(until: true) { gateway.logs.entries("passthrough").count >= 4 }
                let first = gateway.logs.entries("passthrough").first { $0["server_name"] as? String == "db.passthrough.test" }
                #expect(logged && first?["upstream"] as? String == "backend" && first?["target"] as? String == "127.0.0.1:\(backendPort)")
                let metrics = PrometheusText(try await OperationsTests.admin(gateway.gateway, "/metrics", token: nil).text)
                let relayedCount = metrics.value("gateway_passthrough_connections_total", ["listener": "edge", "upstream": "backend", "outcome": "relayed"])
                #expect((relayedCount ?? 0) >= 3)
                #expect(metrics.value("gateway_passthrough_connections_total", ["listener": "relay-only", "upstream": "-", "outcome": "no_match"]) == 1)
                // A backend that is down: the connection closes, with a warning and a count.
                #expect(try await subject(edge, "down.passthrough.test").isEmpty)
                let unavailable = PrometheusText(try await OperationsTests.admin(gateway.gateway, "/metrics", token: nil).text)
                    .value("gateway_passthrough_connections_total", ["listener": "edge", "upstream": "down", "outcome": "upstream_unavailable"])
                #expect(unavailable == 1)
                #expect(gateway.logs.entries("passthrough: no upstream target took the connection").count == 1)
            }
        }
    }

    // TLS 1.2 and 1.3 handshakes succeed (with HSTS on the answer), TLS 1.1 is refused; plaintext gets no HSTS.
    @Test func versionsAndHSTS() async throws {
        let pki = try TestPKI()
        let server = try pki.issueServer("server", names: ["localhost", "127.0.0.1"])
        try await withUpstreams { upstreams in
            let tls = #"{ "certificates": \#(Self.certificates([(server.cert, server.key, ["localhost"])])) }"#
            try await withGateway(Self.config(tls: tls, upstream: "http://127.0.0.1:\(upstreams[0].port)")) { gateway in
                let port = gateway.gateway.listeners[0].port
                for version in [TLSVersion.tlsv12, .tlsv13] {
                    let client = try await RawClient.connectTLS(port: port, configuration: Self.client(trusting: pki, only: version), serverName: "localhost")
                    let response = try await Self.get(client)
                    #expect(response.status == 200, "\(version)")
                    #expect(response.header("strict-transport-security") == "max-age=31536000")
                    #expect(response.echoedHeaders["x-forwarded-proto"] == "https")
                    await client.close()
                }
                let old = await thrownError(async: {
                    _ = try await RawClient.connectTLS(port: port, configuration: Self.client(trusting: pki, only: .tlsv11), serverName: "localhost")
                })
                #expect(old != nil, "TLS 1.1 must be refused")
                let plain = try await RawClient.connect(port: gateway.gateway.listeners[1].port)
                let plainResponse = try await Self.get(plain)
                #expect(plainResponse.status == 200)
                #expect(plainResponse.header("strict-transport-security") == nil)
                await plain.close()
            }
        }
    }

    // A split's sticky cookie is Secure when it is set over TLS (and only then).
    @Test func stickyCookieIsSecureOverTLS() async throws {
        let pki = try TestPKI()
        let server = try pki.issueServer("server", names: ["localhost"])
        try await withUpstreams(2) { upstreams in
            let tls = #"{ "certificates": \#(Self.certificates([(server.cert, server.key, ["localhost"])])) }"#
            let split = #""split": { "upstreams": [{ "name": "demo" }, { "name": "next" }], "sticky_on": "cookie:canary", "set_cookie": true }"#
            let config = Self.config(tls: tls, upstream: "http://127.0.0.1:\(upstreams[0].port)")
                .replacingOccurrences(of: #""routes": [{ "name": "all", "upstream": "demo" }]"#, with: #""routes": [{ "name": "all", \#(split) }]"#)
                .replacingOccurrences(of: #""upstreams": {"#, with: #""upstreams": { "next": { "targets": ["http://127.0.0.1:\#(upstreams[1].port)"] },"#)
            try await withGateway(config) { gateway in
                let secure = try await RawClient.connectTLS(
                    port: gateway.gateway.listeners[0].port, configuration: Self.client(trusting: pki), serverName: "localhost")
                let overTLS = try await Self.get(secure)
                await secure.close()
                let plain = try await RawClient.connect(port: gateway.gateway.listeners[1].port)
                let overPlain = try await Self.get(plain)
                await plain.close()
                #expect(overTLS.header("set-cookie")?.hasSuffix("; HttpOnly; SameSite=Lax; Secure") == true)
                #expect(overPlain.header("set-cookie")?.hasSuffix("; HttpOnly; SameSite=Lax") == true)
            }
        }
    }

    // SNI picks the certificate: exact names, a wildcard, and the first certificate without SNI or for an
    // unknown name. RSA and ECDSA certificates side by side.
    @Test func sniSelectsTheCertificate() async throws {
        let pki = try TestPKI()
        let first = try pki.issueServer("first", names: ["api.test"])
        let second = try pki.issueServer("second", names: ["*.apps.test"], rsa: true)
        let third = try pki.issueServer("third", names: ["admin.test"])
        try await withUpstreams { upstreams in
            let certificates = Self.certificates([
                (first.cert, first.key, ["api.test"]), (second.cert, second.key, ["*.apps.test"]), (third.cert, third.key, ["admin.test"]),
            ])
            try await withGateway(Self.config(tls: #"{ "certificates": \#(certificates) }"#, upstream: "http://127.0.0.1:\(upstreams[0].port)")) { gateway in
                let port = gateway.gateway.listeners[0].port
                var served: [String: String] = [:]
                var anyName = Self.client(trusting: pki)
                anyName.certificateVerification = .noHostnameVerification  // to see what an unknown name gets
                for name in ["api.test", "shop.apps.test", "admin.test", "unknown.test"] {
                    let client = try await RawClient.connectTLS(port: port, configuration: name == "unknown.test" ? anyName : Self.client(trusting: pki), serverName: name)
                    served[name] = try await Self.served(client)
                    await client.close()
                }
                let bare = try await RawClient.connectTLS(port: port, configuration: anyName, serverName: nil)
                served["-"] = try await Self.served(bare)
                await bare.close()
                #expect(served["api.test"]?.contains("alternative_names=api.test") == true, "\(served)")
                #expect(served["shop.apps.test"]?.contains("alternative_names=*.apps.test") == true, "\(served)")
                #expect(served["admin.test"]?.contains("alternative_names=admin.test") == true, "\(served)")
                #expect(served["unknown.test"]?.contains("alternative_names=api.test") == true, "\(served)")
                #expect(served["-"]?.contains("alternative_names=api.test") == true, "\(served)")
            }
        }
    }

    // ALPN h2: curl speaks HTTP/2 through the same routing, filters and streaming as HTTP/1.1; h2load keeps
    // 100 streams in flight on one connection; h2c with prior knowledge works on a plaintext listener.
    @Test func http2ThroughTheSameChain() async throws {
        let pki = try TestPKI()
        let server = try pki.issueServer("server", names: ["localhost"])
        try await withUpstreams { upstreams in
            let tls = #"{ "certificates": \#(Self.certificates([(server.cert, server.key, ["localhost"])])) }"#
            let json = Self.config(tls: tls, upstream: "http://127.0.0.1:\(upstreams[0].port)", plainExtra: #", "h2c": true"#)
            try await withGateway(json) { gateway in
                let port = gateway.gateway.listeners[0].port
                let plainPort = gateway.gateway.listeners[1].port
                let base = "curl -s --cacert \(pki.caFile) --resolve localhost:\(port):127.0.0.1 --http2"
                let echo = try await shell(#"\#(base) -D - -H 'X-Request-ID: h2-test-1' https://localhost:\#(port)/echo?q=1"#, timeout: .seconds(30))
                #expect(echo.stdout.hasPrefix("HTTP/2 200"), "\(echo.stdout) \(echo.stderr)")
                #expect(echo.stdout.contains("x-request-id: h2-test-1"))
                #expect(echo.stdout.contains("strict-transport-security: max-age=31536000"))
                #expect(echo.stdout.contains(#""uri":"/echo?q=1""#))
                #expect(echo.stdout.contains(#""x-forwarded-proto":"https""#))

                let big = try await shell(#"\#(base) -o /dev/null -w '%{http_version} %{http_code} %{size_download}' https://localhost:\#(port)/bytes/30000000"#, timeout: .seconds(60))
                #expect(big.stdout == "2 200 30000000")
                let upload = try await shell(
                    #"head -c 3000000 /dev/zero | \#(base) -T - https://localhost:\#(port)/upload"#, timeout: .seconds(60))
                #expect(upload.stdout.contains(#""bytes":3000000"#), "\(upload.stdout) \(upload.stderr)")
                let missing = try await shell(#"\#(base) -o /dev/null -w '%{http_version} %{http_code}' https://localhost:\#(port)/nothing"#)
                #expect(missing.stdout == "2 200")  // the catch-all route forwards it; the demo echoes

                let streams = try await shell("h2load -n 100 -c 1 -m 100 https://127.0.0.1:\(port)/echo", timeout: .seconds(60))
                #expect(streams.stdout.contains("100 succeeded"), "\(streams.stdout)")
                #expect(streams.stdout.contains("100 2xx"))

                let h2c = try await shell("curl -s --http2-prior-knowledge -o /dev/null -w '%{http_version} %{http_code}' http://127.0.0.1:\(plainPort)/echo")
                #expect(h2c.stdout == "2 200")
                let http1 = try await shell("curl -s -o /dev/null -w '%{http_version} %{http_code}' http://127.0.0.1:\(plainPort)/echo")
                #expect(http1.stdout == "1.1 200")
            }
        }
    }

    // A reload changes the certificate for new handshakes while an open connection keeps working; a reload
    // with a broken file keeps the current certificate.
    @Test func certificateReload() async throws {
        let pki = try TestPKI()
        let old = try pki.issueServer("old", names: ["localhost"])
        let new = try pki.issueServer("new", names: ["localhost", "reloaded.test"])
        let certPath = pki.path("live.pem")
        let keyPath = pki.path("live-key.pem")
        try FileManager.default.copyItem(atPath: old.cert, toPath: certPath)
        try FileManager.default.copyItem(atPath: old.key, toPath: keyPath)
        try await withUpstreams { upstreams in
            let tls = #"{ "certificates": \#(Self.certificates([(certPath, keyPath, ["localhost"])])) }"#
            try await withGateway(Self.config(tls: tls, upstream: "http://127.0.0.1:\(upstreams[0].port)")) { gateway in
                let port = gateway.gateway.listeners[0].port
                let before = try await RawClient.connectTLS(port: port, configuration: Self.client(trusting: pki), serverName: "localhost")
                let first = try await Self.get(before)
                let firstCertificate = try await Self.served(before)
                #expect(first.status == 200)
                #expect(!firstCertificate.contains("reloaded.test"))

                try FileManager.default.removeItem(atPath: certPath)
                try FileManager.default.removeItem(atPath: keyPath)
                try FileManager.default.copyItem(atPath: new.cert, toPath: certPath)
                try FileManager.default.copyItem(atPath: new.key, toPath: keyPath)
                #expect(gateway.gateway.reloadCertificates().isEmpty)

                let after = try await RawClient.connectTLS(port: port, configuration: Self.client(trusting: pki), serverName: "localhost")
                let afterCertificate = try await Self.served(after)
                let afterResponse = try await Self.get(after)
                let beforeAgain = try await Self.get(before)
                #expect(afterCertificate.contains("reloaded.test"))
                #expect(afterResponse.status == 200)
                #expect(beforeAgain.status == 200, "the old connection keeps working")
                await after.close()
                await before.close()

                try "not a key".write(toFile: keyPath, atomically: true, encoding: .utf8)
                let failures = gateway.gateway.reloadCertificates()
                #expect(failures["tls"]?.contains("live-key.pem") == true, "\(failures)")
                #expect(gateway.logs.entries("certificate reload failed; keeping the previous certificates").count == 1)
                let still = try await RawClient.connectTLS(port: port, configuration: Self.client(trusting: pki), serverName: "localhost")
                let stillCertificate = try await Self.served(still)
                #expect(stillCertificate.contains("reloaded.test"))
                await still.close()
            }
        }
    }

    // With reload.watch, certificate files renewed in place (certbot, cert-manager) are picked up without a
    // signal: the listener's new handshakes get the new certificate, and an upstream's renewed CA bundle is
    // trusted from then on (its TLS contexts are made again although the config did not change).
    @Test(.timeLimit(.minutes(1))) func renewedFilesOnDiskAreReloaded() async throws {
        let pki = try TestPKI()
        let old = try pki.issueServer("old", names: ["localhost"])
        let new = try pki.issueServer("new", names: ["localhost", "renewed.test"])
        let backendPKI = try TestPKI(name: "backend")
        let backend = try await Self.tlsUpstream(try backendPKI.issueServer("backend", names: ["127.0.0.1"]))
        defer { Task { await backend.shutdown() } }

        let (certPath, keyPath, caPath) = (pki.path("live.pem"), pki.path("live-key.pem"), pki.path("upstream-ca.pem"))
        try FileManager.default.copyItem(atPath: old.cert, toPath: certPath)
        try FileManager.default.copyItem(atPath: old.key, toPath: keyPath)
        try FileManager.default.copyItem(atPath: pki.caFile, toPath: caPath)  // not the backend's CA yet
        let json = """
            { "workers": 1, "reload": { "watch": true, "interval_ms": 100 },
              "listeners": [{ "name": "tls", "address": "127.0.0.1", "port": 0,
                              "tls": { "certificates": \(Self.certificates([(certPath, keyPath, ["localhost"])])) } }],
              "upstreams": { "secure": { "targets": ["https://127.0.0.1:\(backend.port)"], "tls": { "ca_file": "\(caPath)" } } },
              "routes": [{ "name": "all", "upstream": "secure" }] }
            """
        try await OperationsTests.withFileGateway(json, upstreams: []) { gateway, _, logs in
            let port = try #require(gateway.port(of: "tls"))
            let first = try await RawClient.connectTLS(port: port, configuration: Self.client(trusting: pki), serverName: "localhost")
            let firstCertificate = try await Self.served(first)
            let refused = try await Self.get(first)
            await first.close()
            #expect(!firstCertificate.contains("renewed.test"))
            #expect(refused.status == 502, "the upstream's certificate is not trusted yet")

            try Data(contentsOf: URL(fileURLWithPath: new.key)).write(to: URL(fileURLWithPath: keyPath), options: .atomic)
            try Data(contentsOf: URL(fileURLWithPath: new.cert)).write(to: URL(fileURLWithPath: certPath), options: .atomic)
            try Data(contentsOf: URL(fileURLWithPath: backendPKI.caFile)).write(to: URL(fileURLWithPath: caPath), options: .atomic)
            let deadline = ContinuousClock.now + .seconds(10)
            var served = ""
            var status = 0
            while (!served.contains("renewed.test") || status != 200) && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
                let client = try await RawClient.connectTLS(port: port, configuration: Self.client(trusting: pki), serverName: "localhost")
                served = try await Self.served(client)
                status = try await Self.get(client).status
                await client.close()
            }
            #expect(served.contains("renewed.test"), "new handshakes get the renewed certificate")
            #expect(status == 200, "the renewed CA bundle is trusted")
            let noticed = logs.entries("config file changed; reloading").compactMap { $0["path"] as? String }
            let namesRenewedFile = noticed.contains { $0.contains("live.pem") || $0.contains("upstream-ca.pem") }
            #expect(namesRenewedFile, "\(noticed)")
        }
    }

    // Each listener certificate's expiry is a gauge (Unix seconds), for an alert well before it runs out.
    @Test func certificateExpiryIsExported() async throws {
        let pki = try TestPKI()
        let server = try pki.issueServer("server", names: ["localhost"])
        let tls = #"{ "certificates": \#(Self.certificates([(server.cert, server.key, ["localhost"])])) }"#
        let json = Self.config(tls: tls, upstream: "http://127.0.0.1:9").replacingOccurrences(
            of: #"{ "workers": 1,"#, with: #"{ "workers": 1, "admin": { "address": "127.0.0.1", "port": 0 },"#)
        try await withGateway(json) { gateway in
            let metrics = PrometheusText(try await OperationsTests.admin(gateway.gateway, "/metrics", token: nil).text)
            let exported = metrics.value("gateway_tls_certificate_expiry_timestamp_seconds", ["listener": "tls", "certificate": server.cert])
            let expiry = Double(try NIOSSLCertificate.fromPEMFile(server.cert)[0].notValidAfter)
            #expect(exported == expiry)
        }
    }

    // mTLS required: no client certificate, no handshake. With one, its verified subject goes upstream in
    // the configured header, replacing whatever the client put there; a plaintext client cannot forge it.
    @Test func mutualTLS() async throws {
        let pki = try TestPKI()
        let server = try pki.issueServer("server", names: ["localhost"])
        let clientCert = try pki.issueClient("client", subject: "/CN=client-1/O=Example")
        try await withUpstreams { upstreams in
            let tls = #"{ "certificates": \#(Self.certificates([(server.cert, server.key, ["localhost"])])), "client_ca": "\#(pki.caFile)", "client_auth": "required", "client_subject_header": "X-Client-Subject" }"#
            try await withGateway(Self.config(tls: tls, upstream: "http://127.0.0.1:\(upstreams[0].port)")) { gateway in
                let port = gateway.gateway.listeners[0].port
                let anonymous = await thrownError(async: {
                    let client = try await RawClient.connectTLS(port: port, configuration: Self.client(trusting: pki), serverName: "localhost")
                    _ = try await Self.get(client)  // TLS 1.3 may report the refusal only at the first read
                })
                #expect(anonymous != nil, "a client without a certificate must be refused")

                let withCertificate = try Self.client(trusting: pki, presenting: clientCert)
                let client = try await RawClient.connectTLS(port: port, configuration: withCertificate, serverName: "localhost")
                let response = try await Self.get(client, headers: "X-Client-Subject: CN=admin\r\n")
                #expect(response.status == 200)
                #expect(response.echoedHeaders["x-client-subject"] == "O=Example,CN=client-1" || response.echoedHeaders["x-client-subject"] == "CN=client-1,O=Example", "\(response.echoedHeaders)")
                await client.close()

                let plain = try await RawClient.connect(port: gateway.gateway.listeners[1].port)
                let forged = try await Self.get(plain, headers: "X-Client-Subject: CN=admin\r\n")
                #expect(forged.echoedHeaders["x-client-subject"] == nil)
                await plain.close()
            }
        }
    }

    // client_crl: a client certificate its CA revoked gets no handshake, one it did not goes through with its subject
    // upstream; another CA's certificate and one only for servers are refused as BoringSSL refuses them without lists. A new list (DER this
    // time) is read by a certificate reload and applies to the next handshakes. The list's next update is a metric.
    @Test func revokedClientCertificates() async throws {
        let pki = try TestPKI()
        let server = try pki.issueServer("server", names: ["localhost"])
        let good = try pki.issueClient("good", subject: "/CN=good")
        let revoked = try pki.issueClient("revoked", subject: "/CN=revoked")
        let serverOnly = try pki.issueServer("server-only", names: ["client.test"])
        let strangers = try TestPKI(name: "stranger")
        let stranger = try strangers.issueClient("stranger", subject: "/CN=good")
        let listFile = pki.path("clients.crl")
        try FileManager.default.copyItem(atPath: try pki.revocationList(revoking: [revoked.cert], into: "first"), toPath: listFile)
        try await withUpstreams { upstreams in
            let tls = #"{ "certificates": \#(Self.certificates([(server.cert, server.key, ["localhost"])])), "client_ca": "\#(pki.caFile)", "client_crl": "\#(listFile)", "client_subject_header": "X-Client-Subject" }"#
            let json = Self.config(tls: tls, upstream: "http://127.0.0.1:\(upstreams[0].port)").replacingOccurrences(
                of: #"{ "workers": 1,"#, with: #"{ "workers": 1, "admin": { "address": "127.0.0.1", "port": 0 },"#)
            /// The subject the upstream saw through the listener on `port`, or nil when the gateway refused the handshake.
            func subject(at port: Int, presenting identity: (cert: String, key: String)?) async throws -> String? {
                let configuration = try Self.client(trusting: pki, presenting: identity)
                do {
                    let client = try await RawClient.connectTLS(port: port, configuration: configuration, serverName: "localhost")
                    let response = try await Self.get(client)  // TLS 1.3 may report the refusal only at the first read
                    await client.close()
                    return response.status == 200 ? response.echoedHeaders["x-client-subject"] ?? "" : "status \(response.status)"
                } catch {
                    return nil
                }
            }
            try await withGateway(json) { gateway in
                let port = gateway.gateway.listeners[0].port
                #expect(try await subject(at: port, presenting: good) == "CN=good")
                #expect(try await subject(at: port, presenting: revoked) == nil)
                #expect(try await subject(at: port, presenting: serverOnly) == nil)
                #expect(try await subject(at: port, presenting: stranger) == nil, "the chain check is the gateway's own here: another CA's certificate")
                #expect(try await subject(at: port, presenting: nil) == nil)
                let metrics = PrometheusText(try await OperationsTests.admin(gateway.gateway, "/metrics", token: nil).text)
                let nextUpdate = metrics.value("gateway_tls_crl_next_update_timestamp_seconds", ["listener": "tls", "issuer": "CN=test test CA"]) ?? 0
                #expect(abs(nextUpdate - Date().timeIntervalSince1970 - 7 * 86400) < 120, "\(nextUpdate)")
                func listed() async throws -> [[String: Any]] {
                    try await OperationsTests.admin(gateway.gateway, "/certificates", token: nil).json["revocation_lists"] as? [[String: Any]] ?? []
                }
                let first = try await listed()
                #expect(first.count == 1 && first.first?["listener"] as? String == "tls" && first.first?["issuer"] as? String == "CN=test test CA")
                #expect(first.first?["revoked"] as? Int == 1 && first.first?["next_update"] is String, "\(first)")

                let second = try pki.revocationList(revoking: [good.cert], into: "second", der: true)
                try FileManager.default.removeItem(atPath: listFile)
                try FileManager.default.copyItem(atPath: second, toPath: listFile)
                #expect(gateway.gateway.reloadCertificates().isEmpty)
                let relisted = try await listed()
                #expect(relisted.first?["revoked"] as? Int == 2, "\(relisted)")
                #expect(try await subject(at: port, presenting: good) == nil)
                #expect(try await subject(at: port, presenting: revoked) == nil)
            }
            // client_auth optional: a client without a certificate passes (no subject upstream); a revoked one still does not.
            let certificateOptional = json.replacingOccurrences(of: #""client_crl":"#, with: #""client_auth": "optional", "client_crl":"#)
            try await withGateway(certificateOptional) { gateway in
                let port = gateway.gateway.listeners[0].port
                let (anonymous, refused, alsoRefused) = (
                    try await subject(at: port, presenting: nil), try await subject(at: port, presenting: revoked),
                    try await subject(at: port, presenting: good)
                )
                #expect(anonymous == "")
                #expect(refused == nil)
                #expect(alsoRefused == nil, "the list read at start revokes it too")
            }
        }
        withExtendedLifetime(strangers) {}  // its folder holds the stranger's files
    }

    // auth.require "mtls": the verified client certificate names the consumer (auth.mtls_clients) and its scopes;
    // without a certificate (client_auth optional) or with one nobody is configured for, 401.
    @Test func clientCertificatesAsCredentials() async throws {
        let pki = try TestPKI()
        let server = try pki.issueServer("server", names: ["localhost"])
        let known = try pki.issueClient("known", subject: "/CN=billing-1/O=Example")
        let stranger = try pki.issueClient("stranger", subject: "/CN=someone/O=Example")
        try await withUpstreams { upstreams in
            let tls = #"{ "certificates": \#(Self.certificates([(server.cert, server.key, ["localhost"])])), "client_ca": "\#(pki.caFile)", "client_auth": "optional" }"#
            let json = Self.config(tls: tls, upstream: "http://127.0.0.1:\(upstreams[0].port)")
                .replacingOccurrences(
                    of: #""routes": [{ "name": "all", "upstream": "demo" }]"#,
                    with: #"""
                        "auth": { "mtls_clients": [{ "id": "billing", "common_name": "billing-1", "scopes": ["orders:read"] }] },
                        "routes": [{ "name": "read", "match": { "path_prefix": "/orders" }, "upstream": "demo", "auth": { "require": ["mtls"], "scopes": ["orders:read"] } },
                                   { "name": "write", "match": { "path_prefix": "/admin" }, "upstream": "demo", "auth": { "require": ["mtls"], "scopes": ["orders:write"] } }]
                        """#)
            try await withGateway(json) { gateway in
                let port = gateway.gateway.listeners[0].port
                func client(_ identity: (cert: String, key: String)?) async throws -> RawClient {
                    try await RawClient.connectTLS(port: port, configuration: Self.client(trusting: pki, presenting: identity), serverName: "localhost")
                }
                let billing = try await client((known.cert, known.key))
                let allowed = try await Self.get(billing, "/orders/1")
                #expect(allowed.status == 200)
                #expect(allowed.echoedHeaders["x-auth-subject"] == "billing")
                #expect(allowed.echoedHeaders["x-auth-method"] == "mtls")
                let forbidden = try await Self.get(billing, "/admin")
                #expect(forbidden.status == 403)
                await billing.close()

                let anonymous = try await client(nil)
                let refused = try await Self.get(anonymous, "/orders/1")
                #expect(refused.status == 401)
                #expect(refused.header("www-authenticate") == #"ClientCertificate realm="gateway""#)
                await anonymous.close()

                let unknown = try await client((stranger.cert, stranger.key))
                #expect(try await Self.get(unknown, "/orders/1").status == 401)
                await unknown.close()
            }
        }
    }

    // mtls_clients by URI name (a workload's SPIFFE ID, as service meshes issue them) and client_cert_header: the
    // verified certificate itself goes upstream URL-encoded (NGINX's $ssl_client_escaped_cert, AWS ALB's format), for
    // upstreams that read more of it; a client's own field of that name never passes, on any listener.
    @Test func spiffeIdentitiesAndTheCertificateUpstream() async throws {
        let pki = try TestPKI()
        let server = try pki.issueServer("server", names: ["localhost"])
        let workload = try pki.issueClient("workload", subject: "/CN=api", uri: "spiffe://example.org/ns/billing/sa/api")
        let other = try pki.issueClient("other", subject: "/CN=api", uri: "spiffe://example.org/ns/shop/sa/api")
        try await withUpstreams { upstreams in
            let tls = #"{ "certificates": \#(Self.certificates([(server.cert, server.key, ["localhost"])])), "client_ca": "\#(pki.caFile)", "client_cert_header": "X-Client-Cert" }"#
            let json = Self.config(tls: tls, upstream: "http://127.0.0.1:\(upstreams[0].port)")
                .replacingOccurrences(
                    of: #""routes": [{ "name": "all", "upstream": "demo" }]"#,
                    with: #"""
                        "auth": { "mtls_clients": [{ "id": "billing-api", "uri": "spiffe://example.org/ns/billing/sa/api", "scopes": ["orders:read"] }] },
                        "routes": [{ "name": "read", "match": { "path_prefix": "/orders" }, "upstream": "demo", "auth": { "require": ["mtls"], "scopes": ["orders:read"] } },
                                   { "name": "public", "upstream": "demo" }]
                        """#)
            try await withGateway(json) { gateway in
                let port = gateway.gateway.listeners[0].port
                func client(_ identity: (cert: String, key: String)) async throws -> RawClient {
                    try await RawClient.connectTLS(port: port, configuration: Self.client(trusting: pki, presenting: identity), serverName: "localhost")
                }
                let billing = try await client(workload)
                let allowed = try await Self.get(billing, "/orders/1", headers: "X-Client-Cert: forged\r\n")
                #expect(allowed.status == 200 && allowed.echoedHeaders["x-auth-subject"] == "billing-api")
                let sent = try #require(allowed.echoedHeaders["x-client-cert"]?.removingPercentEncoding)
                let issued = try String(contentsOfFile: workload.cert, encoding: .utf8)
                let body = { (pem: String) in pem.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined() }
                #expect(sent.hasPrefix("-----BEGIN CERTIFICATE-----\n") && body(sent) == body(issued), "\(sent)")
                #expect(allowed.echoedHeaders["x-client-cert"]?.contains("\n") == false, "one header line")
                await billing.close()

                let shop = try await client(other)
                #expect(try await Self.get(shop, "/orders/1").status == 401, "another workload's URI names nobody")
                await shop.close()

                let plain = try await RawClient.connect(port: gateway.gateway.listeners[1].port)
                let forged = try await Self.get(plain, "/", headers: "X-Client-Cert: forged\r\n")
                #expect(forged.status == 200 && forged.echoedHeaders["x-client-cert"] == nil)
                await plain.close()
            }
        }
    }

    // Upstream TLS: an upstream whose certificate is not trusted gets a 502 JSON error; with its CA as
    // ca_file the request goes through (SNI and name checked).
    @Test func upstreamTLSVerifiesCertificates() async throws {
        let pki = try TestPKI(name: "upstream")
        let upstream = try await Self.tlsUpstream(try pki.issueServer("backend", names: ["backend.test", "127.0.0.1"]))
        defer { Task { await upstream.shutdown() } }
        let target = "https://127.0.0.1:\(upstream.port)"
        let json = basicConfig(targets: #""\#(target)""#)
        try await withGateway(json) { gateway in
            let response = try await gateway.request("GET", "/echo")
            #expect(response.status == 502)
            #expect(response.errorCode == "UPSTREAM_UNAVAILABLE")
        }
        let trusted = basicConfig(targets: #""\#(target)""#, upstreamExtra: #", "tls": { "ca_file": "\#(pki.caFile)", "server_name": "backend.test" }"#)
        try await withGateway(trusted) { gateway in
            let response = try await gateway.request("GET", "/echo")
            #expect(response.status == 200, "\(response)")
            #expect(Self.upstreamName(response) == "secure")
        }
        let byIP = basicConfig(targets: #""\#(target)""#, upstreamExtra: #", "tls": { "ca_file": "\#(pki.caFile)" }"#)
        try await withGateway(byIP) { gateway in
            let response = try await gateway.request("GET", "/echo")
            #expect(response.status == 200, "the certificate names the IP too")
        }
    }

    static func upstreamName(_ response: TestResponse) -> String? { response.json["upstream"] as? String }

    /// A demo upstream named "secure" serving HTTP/1.1 over TLS with `certificate`.
    static func tlsUpstream(_ certificate: (cert: String, key: String)) async throws -> DemoUpstream {
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(certificate.cert).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: certificate.key, format: .pem)))
        configuration.applicationProtocols = ["http/1.1"]
        return try await DemoUpstream.start(name: "secure", tls: try NIOSSLContext(configuration: configuration))
    }

    // A client that connects and never finishes the handshake is dropped at header_timeout_ms.
    @Test func stalledHandshakeIsClosed() async throws {
        let pki = try TestPKI()
        let server = try pki.issueServer("server", names: ["localhost"])
        let tls = #"{ "certificates": \#(Self.certificates([(server.cert, server.key, ["localhost"])])) }"#
        let json = Self.config(tls: tls, upstream: "http://127.0.0.1:9").replacingOccurrences(
            of: #""workers": 1,"#, with: #""workers": 1, "limits": { "header_timeout_ms": 300 },"#)
        try await withGateway(json) { gateway in
            let client = try await RawClient.connect(port: gateway.gateway.listeners[0].port)
            let started = ContinuousClock.now
            #expect(await client.waitForClose(timeout: .seconds(3)))
            #expect(ContinuousClock.now - started >= .milliseconds(250))
        }
    }

    // `gateway check` reads the files: a key that belongs to another certificate and a missing file are errors
    // with their JSON paths; a server name the certificate does not cover is a warning.
    @Test func checkValidatesTLSFiles() async throws {
        let pki = try TestPKI()
        let one = try pki.issueServer("one", names: ["one.test"])
        let two = try pki.issueServer("two", names: ["two.test"])
        let tls = #"{ "certificates": [{ "cert": "\#(one.cert)", "key": "\#(two.key)" }, { "cert": "\#(pki.path("missing.pem"))", "key": "\#(one.key)" }, { "cert": "\#(two.cert)", "key": "\#(two.key)", "server_names": ["other.test"] }] }"#
        let file = pki.path("gateway.json")
        try Self.config(tls: tls, upstream: "http://127.0.0.1:9").write(toFile: file, atomically: true, encoding: .utf8)
        let result = try await runCommand(Binaries.gateway, ["check", "--config", file])
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(result.status == 1)
        #expect(lines.contains("listeners[0].tls.certificates[0].key: \(two.key) does not match the certificate in \(one.cert)"), "\(lines)")
        #expect(lines.contains("listeners[0].tls.certificates[1].cert: \(pki.path("missing.pem")) does not exist"), "\(lines)")
        #expect(lines.contains(#"warning: listeners[0].tls.certificates[2].server_names: "other.test" is not among the certificate's names ["two.test"]"#), "\(lines)")
    }
}
