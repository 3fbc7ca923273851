import Foundation
import GatewayConfig
import GatewayPolicy
import Testing

@Suite struct ConfigDecodingTests {
    func load(_ json: String, environment: [String: String] = [:]) -> ConfigLoadResult {
        ConfigLoader.load(text: json, environment: environment)
    }

    func minimal(route: String = #"{ "name": "r", "upstream": "u" }"#, extra: String = "") -> String {
        """
        { \(extra) "listeners": [{ "name": "l", "port": 1 }],
          "upstreams": { "u": { "targets": ["http://127.0.0.1:9"] } },
          "routes": [\(route)] }
        """
    }

    // Defaults fill every key an operator leaves out.
    @Test func defaults() throws {
        let config = try #require(load(minimal()).config)
        #expect(config.workers == nil)
        #expect(config.listeners[0].address == "0.0.0.0")
        #expect(config.limits.maxHeaderBytes == 16_384)
        #expect(config.limits.maxBodyBytes == 10_485_760)
        #expect(config.limits.headerTimeoutMs == 10_000)
        #expect(config.limits.idleTimeoutMs == 60_000)
        #expect(config.limits.tunnelIdleTimeoutMs == 3_600_000)
        #expect(config.securityHeaders.contentTypeOptions == "nosniff")
        #expect(config.securityHeaders.hstsMaxAgeSeconds == 31_536_000)
        let upstream = try #require(config.upstream(named: "u"))
        #expect(upstream.connectTimeoutMs == 1000)
        #expect(upstream.readTimeoutMs == 30_000)
        #expect(upstream.totalTimeoutMs == nil)
        #expect(upstream.targets[0] == UpstreamTarget(url: "http://127.0.0.1:9"))
        #expect(config.routes[0].preserveHost)
        #expect(config.logging.accessLog)
    }

    // TLS keys: relative files resolve against the config's folder; mistakes are reported with their paths.
    // Listeners on a Unix socket: path instead of address and port, an octal mode, "unix:" in trusted_proxies to
    // trust their peers (and to let them send PROXY headers).
    @Test func unixSocketListenerShapes() throws {
        func load(listener: String, top: String = "") -> ConfigLoadResult {
            self.load(#"{ \#(top) "listeners": [\#(listener)], "upstreams": { "u": { "targets": ["http://127.0.0.1:9"] } }, "routes": [{ "name": "r", "upstream": "u" }] }"#)
        }
        let good = load(listener: #"{ "name": "local", "path": "/run/gw.sock", "mode": "0666" }"#, top: #""trusted_proxies": ["10.0.0.0/8", "unix:"],"#)
        let listener = try #require(good.config?.listeners.first)
        #expect(listener.socketPath == "/run/gw.sock" && listener.socketMode == 0o666 && good.errors.isEmpty)
        #expect(good.config?.trustsUnixPeers == true && good.config?.trustedProxies.count == 1)
        #expect(load(listener: #"{ "name": "local", "path": "/run/gw.sock" }"#).config?.listeners.first?.socketMode == 0o660)
        #expect(load(listener: #"{ "name": "local", "path": "/run/gw.sock", "port": 80, "mode": "rw" }"#).errors.map(\.description) == [
            "listeners[0].mode: expected file permissions in octal, such as \"0660\"",
            "listeners[0].port: a listener on a Unix socket (path) has no port",
        ])
        #expect(load(listener: #"{ "name": "tcp", "port": 80, "mode": "0600" }"#).errors.map(\.description) == ["listeners[0].mode: is for listeners on a Unix socket (path)"])
        #expect(load(listener: #"{ "name": "local", "path": "/run/gw.sock", "proxy_protocol": true }"#, top: #""trusted_proxies": ["10.0.0.0/8"],"#).errors.map(\.description) == [
            #"listeners[0].proxy_protocol: needs "unix:" in trusted_proxies: the proxies on this socket are then allowed to send the header"#
        ])
    }

    // acme: listener certificates marked acme get files under acme.storage (named after their first name); the section
    // needs storage and the agreement; mistakes are reported at their paths.
    @Test func acmeShapes() throws {
        func load(certificate: String, acme: String?) -> ConfigLoadResult {
            self.load(
                #"{ \#(acme.map { #""acme": \#($0),"# } ?? "") "listeners": [{ "name": "http", "port": 80 }, { "name": "https", "port": 443, "tls": { "certificates": [\#(certificate)] } }], "upstreams": { "u": { "targets": ["http://127.0.0.1:9"] } }, "routes": [{ "name": "r", "upstream": "u" }] }"#)
        }
        let good = load(
            certificate: #"{ "acme": true, "server_names": ["api.example.com", "www.example.com"] }"#,
            acme: #"{ "email": "ops@example.com", "storage": "/var/lib/gateway/acme", "agree_to_terms": true }"#)
        #expect(good.errors.isEmpty, "\(good.errors)")
        let config = try #require(good.config)
        #expect(config.acme?.directoryURL == ACMEConfig.letsEncrypt && config.acme?.renewBeforeDays == 30 && config.acme?.email == "ops@example.com")
        #expect(config.acmeCertificates == [
            ACMECertificate(
                names: ["api.example.com", "www.example.com"], cert: "/var/lib/gateway/acme/api.example.com/cert.pem",
                key: "/var/lib/gateway/acme/api.example.com/key.pem")
        ])
        #expect(config.reloadedFiles.contains("/var/lib/gateway/acme/api.example.com/cert.pem"))
        #expect(good.warnings.isEmpty, "a plaintext listener on port 80 takes the CA's checks")
        let noPort80 = self.load(
            #"{ "acme": { "storage": "/acme", "agree_to_terms": true }, "listeners": [{ "name": "https", "port": 443, "tls": { "certificates": [{ "acme": true, "server_names": ["a.example.com"] }] } }], "upstreams": { "u": { "targets": ["http://127.0.0.1:9"] } }, "routes": [{ "name": "r", "upstream": "u" }] }"#)
        #expect(noPort80.warnings.map(\.description) == [
            "warning: acme: no plaintext listener on port 80, where the CA checks HTTP-01 challenges (fine if a balancer forwards port 80 to one)"
        ])

        let bad = load(
            certificate: #"{ "acme": true, "cert": "a.pem", "server_names": ["*.example.com"] }"#,
            acme: #"{ "directory_url": "http://ca.example/dir", "email": "ops", "storage": "/acme", "agree_to_terms": false, "renew_before_days": 90 }"#)
        #expect(bad.errors.map(\.description) == [
            "listeners[1].tls.certificates[0].cert: an acme certificate is kept by the gateway under acme.storage; leave cert and key out",
            "acme.directory_url: expected the CA's https:// directory URL, e.g. https://acme-v02.api.letsencrypt.org/directory",
            "acme.email: expected an e-mail address such as ops@example.com",
            "acme.renew_before_days: 90 is out of range (1...60)",
            "acme.agree_to_terms: the CA issues certificates only to accounts that agree to its terms of service",
            "listeners[1].tls.certificates[0].server_names[0]: a wildcard needs a DNS-01 challenge: give acme.dns_update (HTTP-01 cannot prove a wildcard)",
        ])

        // external_account_binding: a key id and the CA's base64url MAC key (16 bytes at least).
        let eab = load(
            certificate: #"{ "acme": true, "server_names": ["a.example.com"] }"#,
            acme: #"{ "storage": "/acme", "agree_to_terms": true, "external_account_binding": { "key_id": "kid-1", "hmac_key": "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W" } }"#)
        #expect(eab.config?.acme?.externalAccount?.keyID == "kid-1" && eab.config?.acme?.externalAccount?.hmacKey.count == 48, "\(eab.errors)")
        let shortKey = load(
            certificate: #"{ "acme": true, "server_names": ["a.example.com"] }"#,
            acme: #"{ "storage": "/acme", "agree_to_terms": true, "external_account_binding": { "key_id": "kid-1", "hmac_key": "c2hvcnQ" } }"#)
        #expect(shortKey.errors.map(\.description) == [
            "acme.external_account_binding.hmac_key: expected the CA's base64url MAC key (EAB HMAC key), at least 16 bytes"
        ])

        // dns_update: DNS-01 challenges (wildcards allowed, no port 80 needed), every name inside the zone.
        let dns = #"{ "storage": "/acme", "agree_to_terms": true, "dns_update": { "server": "ns1.example.com", "zone": "Example.com.", "tsig_key": { "name": "acme-key.", "secret": "c2VjcmV0LXNlY3JldC1zZWNyZXQ=" } } }"#
        let wildcard = load(certificate: #"{ "acme": true, "server_names": ["*.example.com", "example.com", "api.eu.example.com"] }"#, acme: dns)
        #expect(wildcard.errors.isEmpty && wildcard.warnings.isEmpty, "\(wildcard.errors) \(wildcard.warnings)")
        let update = try #require(wildcard.config?.acme?.dnsUpdate)
        #expect(update.host == "ns1.example.com" && update.port == 53 && update.zone == "example.com" && update.ttlSeconds == 60 && update.propagationSeconds == 10)
        #expect(update.key == DNSUpdateConfig.TSIGKey(name: "acme-key", algorithm: .hmacSHA256, secret: Array("secret-secret-secret".utf8)))
        let outside = load(certificate: #"{ "acme": true, "server_names": ["api.example.org", "notexample.com"] }"#, acme: dns)
        #expect(outside.errors.map(\.description) == [
            "listeners[1].tls.certificates[0].server_names[0]: is not in acme.dns_update.zone example.com: its challenge record could not be put there",
            "listeners[1].tls.certificates[0].server_names[1]: is not in acme.dns_update.zone example.com: its challenge record could not be put there",
        ])
        let badUpdate = load(
            certificate: #"{ "acme": true, "server_names": ["a.example.com"] }"#,
            acme: #"{ "storage": "/acme", "agree_to_terms": true, "dns_update": { "server": "10.0.0.53:99999", "zone": "com", "tsig_key": { "name": "acme key", "algorithm": "hmac-md5", "secret": "c2hvcnQ=" }, "propagation_seconds": -1 } }"#)
        #expect(badUpdate.errors.map(\.description) == [
            "acme.dns_update.server: expected the zone's primary server as HOST:PORT (an address or a name; the port defaults to 53)",
            "acme.dns_update.zone: expected the zone's name, such as example.com",
            "acme.dns_update.tsig_key.name: expected the key's name as the server knows it (a DNS name, such as acme-key)",
            #"acme.dns_update.tsig_key.algorithm: unknown value "hmac-md5"; expected one of "hmac-sha256", "hmac-sha512""#,
            #"acme.dns_update.tsig_key.secret: expected the key's base64 secret (tsig-keygen's "secret"), at least 16 bytes"#,
            "acme.dns_update.propagation_seconds: -1 is out of range (0...3600)",
        ])
        #expect(load(certificate: #"{ "acme": true, "server_names": ["a.example.com"] }"#, acme: nil).errors.map(\.description) == [
            "listeners[1].tls.certificates[0].acme: needs the top-level acme section (the CA to ask and where to keep the certificates)"
        ])
        #expect(load(certificate: #"{ "acme": true }"#, acme: #"{ "storage": "/acme", "agree_to_terms": true }"#).errors.map(\.description) == [
            "listeners[1].tls.certificates[0].server_names: an acme certificate needs the names to ask the CA for"
        ])

        // store: files (the default) or redis, which needs the top-level redis; an instance sharing through Redis
        // answers the others' challenges even without certificates of its own, so that is no warning then.
        #expect(config.acme?.store == .files)
        let shared = #""acme": { "storage": "/acme", "agree_to_terms": true, "store": "redis" },"#
        let sharing = self.load(
            #"{ \#(shared) "redis": { "url": "redis://127.0.0.1:6379" }, "listeners": [{ "name": "http", "port": 80 }], "upstreams": { "u": { "targets": ["http://127.0.0.1:9"] } }, "routes": [{ "name": "r", "upstream": "u" }] }"#)
        #expect(sharing.errors.isEmpty && sharing.warnings.isEmpty, "\(sharing.errors) \(sharing.warnings)")
        #expect(sharing.config?.acme?.store == .redis)
        let alone = self.load(
            #"{ "acme": { "storage": "/acme", "agree_to_terms": true }, "listeners": [{ "name": "http", "port": 80 }], "upstreams": { "u": { "targets": ["http://127.0.0.1:9"] } }, "routes": [{ "name": "r", "upstream": "u" }] }"#)
        #expect(alone.warnings.map(\.description) == ["warning: acme: no listener certificate has \"acme\": true"])
        let withoutRedis = self.load(
            #"{ \#(shared) "rate_limiting": { "store": "redis" }, "listeners": [{ "name": "http", "port": 80 }], "upstreams": { "u": { "targets": ["http://127.0.0.1:9"] } }, "routes": [{ "name": "r", "upstream": "u" }] }"#)
        #expect(withoutRedis.errors.map(\.description) == [
            "rate_limiting.store: \"redis\" needs a top-level redis section with its url",
            "acme.store: \"redis\" needs a top-level redis section with its url",
        ])
        #expect(load(certificate: #"{ "acme": true, "server_names": ["a.example.com"] }"#, acme: #"{ "storage": "/acme", "agree_to_terms": true, "store": "etcd" }"#)
            .errors.map(\.description) == [#"acme.store: unknown value "etcd"; expected one of "files", "redis""#])
    }

    // security_headers: cross-origin isolation values from their specs' lists; hsts_preload only with what preload lists
    // require (subdomains, a year).
    @Test func securityHeaderShapes() throws {
        let good = load(minimal(extra: #""security_headers": { "cross_origin_opener_policy": "same-origin", "cross_origin_resource_policy": "cross-origin", "hsts_include_subdomains": true, "hsts_preload": true },"#))
        #expect(good.errors.isEmpty && good.config?.securityHeaders.hstsPreload == true)
        #expect(good.config?.securityHeaders.crossOriginOpenerPolicy == "same-origin" && good.config?.securityHeaders.crossOriginEmbedderPolicy == nil)
        let bad = load(minimal(extra: #""security_headers": { "cross_origin_embedder_policy": "require-cors", "hsts_preload": true },"#)).errors.map(\.description)
        #expect(bad == [
            "security_headers.hsts_preload: preload lists need hsts_include_subdomains and a max age of at least a year (31536000)",
            #"security_headers.cross_origin_embedder_policy: unknown value "require-cors" (did you mean "require-corp"?); expected one of "require-corp", "credentialless", "unsafe-none""#,
        ])
    }

    // upstreams.<name>.aws_sigv4: region, service and keys required; one endpoint; not beside oauth2; routes to a service
    // other than S3 must buffer bodies (their hash is signed).
    @Test func upstreamAWSSigV4Shapes() throws {
        func load(_ upstream: String, route: String = "") -> ConfigLoadResult {
            self.load(#"{ "listeners": [{ "name": "l", "port": 1 }], "upstreams": { "u": \#(upstream) }, "routes": [{ "name": "r", "upstream": "u" \#(route) }] }"#)
        }
        let good = load(#"{ "targets": ["https://media.s3.eu-west-1.amazonaws.com"], "aws_sigv4": { "region": "eu-west-1", "service": "s3", "access_key_id": "AKID", "secret_access_key": "SECRET-VALUE", "session_token": "TOKEN-VALUE" } }"#)
        #expect(good.errors.isEmpty, "\(good.errors)")
        var expected = UpstreamAWSSigV4Config(region: "eu-west-1", service: "s3", accessKeyID: "AKID", secretAccessKey: "SECRET-VALUE")
        expected.sessionToken = "TOKEN-VALUE"
        #expect(good.config?.upstreams.first?.awsSigV4 == expected)
        let shown = try #require(good.config?.source).redactingSecrets().rendered
        #expect(!shown.contains("SECRET-VALUE") && !shown.contains("TOKEN-VALUE") && shown.contains("AKID"), "/config shows no secret")
        let lambda = #"{ "targets": ["https://abc.lambda-url.eu-west-1.on.aws"], "aws_sigv4": { "region": "eu-west-1", "service": "lambda", "access_key_id": "AKID", "secret_access_key": "s" } }"#
        #expect(load(lambda).errors.map(\.description) == [
            #"routes[0].request_buffering: upstream "u" signs requests for lambda with aws_sigv4, which covers the body's hash: set request_buffering true"#
        ])
        #expect(load(lambda, route: #", "request_buffering": true"#).errors.isEmpty)
        let bad = load(#"{ "targets": ["https://a.example", "https://b.example"], "oauth2": { "token_url": "https://id.example/token", "client_id": "c", "client_secret": "s" }, "aws_sigv4": { "region": "EU West", "service": "s3", "access_key_id": "" } }"#)
        #expect(bad.errors.map(\.description) == [
            "upstreams.u.aws_sigv4.region: expected an AWS name such as eu-west-1",
            "upstreams.u.aws_sigv4.access_key_id: must not be empty",
            "upstreams.u.aws_sigv4.secret_access_key: missing required key",
        ], "a section with mistakes is not used, so nothing else is said about it")
        let twoKinds = load(#"{ "targets": ["https://a.example", "https://b.example"], "oauth2": { "token_url": "https://id.example/token", "client_id": "c", "client_secret": "s" }, "aws_sigv4": { "region": "eu-west-1", "service": "s3", "access_key_id": "a", "secret_access_key": "s" } }"#)
        #expect(twoKinds.errors.map(\.description) == [
            "upstreams.u.aws_sigv4: an upstream takes one kind of credentials: oauth2 or aws_sigv4",
            "upstreams.u.targets: with aws_sigv4 every target is the same AWS endpoint (its Host is signed)",
        ])
    }

    // upstreams.<name>.oauth2: the token endpoint, the client and its secret are required; scopes are RFC 6749 scope
    // tokens; a plaintext endpoint beyond loopback is a warning (the secret would cross the network in the clear).
    @Test func upstreamOAuth2Shapes() throws {
        let upstream = { (oauth2: String) in
            #"{ "listeners": [{ "name": "l", "port": 1 }], "upstreams": { "u": { "targets": ["https://api.partner.example"], "oauth2": \#(oauth2) } }, "routes": [{ "name": "r", "upstream": "u" }] }"#
        }
        let good = load(upstream(#"{ "token_url": "https://auth.partner.example/oauth/token", "client_id": "gw", "client_secret": "s", "scopes": ["orders:read", "https://api.partner.example/.default"], "client_auth": "body" }"#))
        #expect(good.errors.isEmpty && good.warnings.isEmpty, "\(good.errors) \(good.warnings)")
        let settings = try #require(good.config?.upstreams.first?.oauth2)
        #expect(settings.scopes == ["orders:read", "https://api.partner.example/.default"] && settings.clientAuth == .body && settings.audience == nil)
        let bad = load(upstream(#"{ "token_url": "ftp://x", "scopes": ["a b"], "client_auth": "jwt" }"#)).errors.map(\.description)
        #expect(bad == [
            "upstreams.u.oauth2.token_url: expected an http:// or https:// URL",
            "upstreams.u.oauth2.client_id: missing required key",
            "upstreams.u.oauth2.client_secret: missing required key",
            "upstreams.u.oauth2.scopes[0]: a scope is printable ASCII without spaces, quotes or backslashes",
            #"upstreams.u.oauth2.client_auth: unknown value "jwt"; expected one of "basic", "body""#,
        ])
        let plain = load(upstream(#"{ "token_url": "http://auth.internal/token", "client_id": "gw", "client_secret": "s" }"#))
        #expect(plain.warnings.map(\.description) == ["warning: upstreams.u.oauth2.token_url: the client secret would cross the network in the clear: use https://"])
        #expect(load(upstream(#"{ "token_url": "http://127.0.0.1:8080/token", "client_id": "gw", "client_secret": "s" }"#)).warnings.isEmpty)
    }

    // geoip and the country rules: codes in any case (kept uppercase) or "unknown"; rules need the database; the
    // database is a file a reload reads again. A rule passes what it does not refuse; an allow list passes only its own.
    @Test func countryRules() throws {
        let route = #"{ "name": "r", "upstream": "u", "allow_countries": ["de", "AT", "unknown"] }"#
        let good = load(minimal(route: route, extra: #""geoip": { "database": "GeoLite2-Country.mmdb" }, "deny_countries": ["KP"],"#))
        #expect(good.errors.isEmpty, "\(good.errors)")
        let config = try #require(good.config)
        let database = try #require(config.geoip?.database)
        #expect(database.hasSuffix("GeoLite2-Country.mmdb") && config.reloadedFiles == [database] && config.geoip?.asnDatabase == nil)
        #expect(config.countries == CountryRule(deny: ["KP"]) && config.routes[0].countries == CountryRule(allow: ["DE", "AT", "unknown"]))
        #expect(config.routes[0].countries.permits("DE") && config.routes[0].countries.permits(nil) && !config.routes[0].countries.permits("FR"))
        #expect(!config.countries.permits("KP") && config.countries.permits("DE") && config.countries.permits(nil))

        let bad = load(minimal(route: #"{ "name": "r", "upstream": "u", "deny_countries": ["Germany", 7] }"#, extra: #""geoip": {},"#))
        #expect(bad.errors.map(\.description) == [
            "geoip: give a database (countries) or an asn_database",
            #"routes[0].deny_countries[0]: expected a two-letter ISO 3166 country code ("DE", "US") or "unknown""#,
            "routes[0].deny_countries[1]: expected a string, found a number",
        ])
        #expect(load(minimal(route: route)).errors.map(\.description) == ["routes[0].allow_countries: needs the top-level geoip section (its database)"])
    }

    // unix:///path targets: an absolute path that fits a socket address, no control characters; named unix:PATH in
    // logs and metrics, Host localhost; nothing for DNS discovery to resolve.
    @Test func unixSocketTargetShapes() throws {
        let target = try #require(UpstreamTarget(url: "unix:///run/app/puma.sock"))
        #expect(target.socketPath == "/run/app/puma.sock" && target.scheme == .http)
        #expect(target.label == "unix:/run/app/puma.sock" && target.authority == "localhost" && target.description == "unix:///run/app/puma.sock")
        #expect(!target.hasHostName && UpstreamTarget(url: "http://app.internal:8080")?.hasHostName == true)
        for bad in ["unix://run/app.sock", "unix://", "unix:///" + String(repeating: "a", count: 107), "unix:///a\nb"] {
            #expect(UpstreamTarget(url: bad) == nil, "\(bad)")
        }
        let json = #"{ "listeners": [{ "name": "l", "port": 1 }], "upstreams": { "u": { "targets": ["unix:///run/a.sock", "unix:relative.sock"], "dns_refresh_ms": 1000 } }, "routes": [{ "name": "r", "upstream": "u" }] }"#
        #expect(load(json).diagnostics.map(\.description) == [
            #"upstreams.u.targets[1]: "unix:relative.sock" is not a valid upstream URL (expected http://host:port, https://host:port or unix:///path/to/app.sock)"#,
            "warning: upstreams.u.dns_refresh_ms: every target is an IP address or a Unix socket: there is nothing to resolve",
        ])
    }

    // A target that is one of the gateway's own listeners (its address, or loopback when it listens on all) is a
    // forwarding loop unless meant: a warning that says what loop_detection will do about it.
    @Test func targetsOnTheGatewaysOwnListeners() {
        func warnings(listener: String, target: String, extra: String = "") -> [String] {
            let json = #"{ \#(extra) "listeners": [{ "name": "edge", \#(listener) }], "upstreams": { "u": { "targets": ["\#(target)"] } }, "routes": [{ "name": "r", "upstream": "u" }] }"#
            return load(json).warnings.map(\.description)
        }
        let own = #"warning: upstreams.u.targets[0]: is this gateway's own listener "edge": loop_detection answers what comes back through it with 508 (turn it off if the gateway is meant to call itself)"#
        #expect(warnings(listener: #""address": "0.0.0.0", "port": 8080"#, target: "http://127.0.0.1:8080") == [own])
        #expect(warnings(listener: #""address": "127.0.0.1", "port": 8080"#, target: "http://localhost:8080") == [own])
        #expect(warnings(listener: #""address": "10.0.0.5", "port": 8080"#, target: "http://10.0.0.5:8080") == [own])
        #expect(warnings(listener: #""address": "10.0.0.5", "port": 8080"#, target: "http://127.0.0.1:8080").isEmpty)
        #expect(warnings(listener: #""address": "0.0.0.0", "port": 8080"#, target: "http://127.0.0.1:9001").isEmpty)
        #expect(warnings(listener: #""address": "0.0.0.0", "port": 8080"#, target: "http://127.0.0.1:8080", extra: #""loop_detection": false,"#) == [
            #"warning: upstreams.u.targets[0]: is this gateway's own listener "edge": requests sent there come back to the gateway"#
        ])
    }

    // response_buffering: true (8 MiB), false, or a bound of its own within 64 KiB...1 GiB.
    @Test func responseBufferingShapes() {
        func bytes(_ value: String) -> Int?? {
            load(minimal(route: #"{ "name": "r", "upstream": "u", "response_buffering": \#(value) }"#)).config.map { $0.routes[0].responseBufferBytes }
        }
        #expect(bytes("true") == .some(8 << 20))
        #expect(bytes("false") == .some(nil))
        #expect(bytes(#"{ "max_bytes": 1048576 }"#) == .some(1 << 20))
        #expect(load(minimal()).config?.routes[0].responseBufferBytes == nil)
        let bad = load(minimal(route: #"{ "name": "r", "upstream": "u", "response_buffering": { "max_bytes": 10, "size": 1 } }"#)).errors.map(\.description)
        #expect(bad.count == 2 && bad.first == "routes[0].response_buffering.max_bytes: 10 is out of range (65536...1073741824)", "\(bad)")
        #expect(load(minimal(route: #"{ "name": "r", "upstream": "u", "response_buffering": 5 }"#)).errors.map(\.description) == [
            "routes[0].response_buffering: expected true, false or an object"
        ])
    }

    @Test func tlsShapes() throws {
        let json = """
            { "listeners": [
                { "name": "s", "port": 443, "h2c": true,
                  "tls": { "certificates": [{ "cert": "certs/a.pem", "key": "/etc/keys/a-key.pem", "server_names": ["*.example.com"] }],
                           "client_ca": "ca.pem", "client_subject_header": "X Bad" } },
                { "name": "p", "port": 80, "h2c": true }],
              "upstreams": { "u": { "targets": ["https://api.internal:8443"], "tls": { "client_cert": "c.pem" } },
                             "v": { "targets": ["http://127.0.0.1:9"], "tls": { "insecure_skip_verify": true } } },
              "routes": [{ "name": "r", "upstream": "u" }, { "name": "r2", "upstream": "v", "match": { "path_prefix": "/v" } }] }
            """
        let result = ConfigLoader.load(text: json, environment: [:], baseDirectory: "/srv/gateway")
        #expect(
            result.errors.map(\.description) == [
                #"listeners[0].tls.client_subject_header: "X Bad" is not a valid header name"#,
                #"listeners[0].h2c: h2c is for plaintext listeners; a TLS listener offers h2 through alpn"#,
                "upstreams.u.tls.client_key: client_cert and client_key go together",
            ])
        #expect(result.warnings.map(\.description) == ["warning: upstreams.v.tls: unused: no target is https://"])

        let fixed = json.replacingOccurrences(of: #""h2c": true,"#, with: "").replacingOccurrences(of: #", "client_subject_header": "X Bad""#, with: "")
            .replacingOccurrences(of: #""client_cert": "c.pem""#, with: #""ca_file": "ca/internal.pem""#)
        let config = try #require(ConfigLoader.load(text: fixed, environment: [:], baseDirectory: "/srv/gateway").config)
        let tls = try #require(config.listeners[0].tls)
        #expect(tls.certificates[0].cert == "/srv/gateway/certs/a.pem")
        #expect(tls.certificates[0].key == "/etc/keys/a-key.pem")
        #expect(tls.clientCA == "/srv/gateway/ca.pem")
        #expect(tls.clientAuth == .required)
        #expect(tls.clientSubjectHeader == "x-client-cert-subject")
        #expect(tls.alpn == ["h2", "http/1.1"])
        #expect(config.listeners[1].h2c)
        #expect(config.upstream(named: "u")?.tls.caFile == "/srv/gateway/ca/internal.pem")
        #expect(tls.clientCRL.isEmpty && tls.clientCertHeader == nil)
        let certificateHeader = fixed.replacingOccurrences(of: #""client_ca": "ca.pem""#, with: #""client_ca": "ca.pem", "client_cert_header": "X-Client-Cert""#)
        #expect(ConfigLoader.load(text: certificateHeader, environment: [:], baseDirectory: "/srv").config?.listeners[0].tls?.clientCertHeader == "x-client-cert")
        let sameHeader = fixed.replacingOccurrences(of: #""client_ca": "ca.pem""#, with: #""client_ca": "ca.pem", "client_cert_header": "X-Client-Cert-Subject""#)
        #expect(ConfigLoader.load(text: sameHeader, environment: [:], baseDirectory: "/srv").errors.map(\.description) == [
            "listeners[0].tls.client_cert_header: is the client_subject_header too: give them different names"
        ])

        // client_crl: one file or several, relative to the config; only with client certificates asked for.
        let oneList = fixed.replacingOccurrences(of: #""client_ca": "ca.pem""#, with: #""client_ca": "ca.pem", "client_crl": "crl/clients.crl""#)
        let withList = try #require(ConfigLoader.load(text: oneList, environment: [:], baseDirectory: "/srv/gateway").config)
        #expect(withList.listeners[0].tls?.clientCRL == ["/srv/gateway/crl/clients.crl"])
        #expect(withList.reloadedFiles.contains("/srv/gateway/crl/clients.crl"))
        let twoLists = fixed.replacingOccurrences(of: #""client_ca": "ca.pem""#, with: #""client_ca": "ca.pem", "client_crl": ["a.crl", "/etc/b.crl"]"#)
        #expect(ConfigLoader.load(text: twoLists, environment: [:], baseDirectory: "/srv/gateway").config?.listeners[0].tls?.clientCRL == [
            "/srv/gateway/a.crl", "/etc/b.crl",
        ])
        let noCA = fixed.replacingOccurrences(of: #""client_ca": "ca.pem""#, with: #""client_crl": "clients.crl""#)
        #expect(ConfigLoader.load(text: noCA, environment: [:], baseDirectory: "/srv/gateway").errors.map(\.description) == [
            "listeners[0].tls.client_crl: revocation lists apply to client certificates: set client_ca (and client_auth)"
        ])
        let notOptional = fixed.replacingOccurrences(of: #""client_ca": "ca.pem""#, with: #""client_ca": "ca.pem", "client_crl": 7"#)
        #expect(ConfigLoader.load(text: notOptional, environment: [:], baseDirectory: "/srv/gateway").errors.map(\.description) == [
            "listeners[0].tls.client_crl: expected a string, found a number"
        ])
    }

    // ${NAME} is read from the environment; $${ escapes; a missing variable is named.
    @Test func environmentSubstitution() throws {
        let route = #"{ "name": "r", "upstream": "u", "strip_prefix": "/${PREFIX}" }"#
        let config = try #require(load(minimal(route: route), environment: ["PREFIX": "api"]).config)
        #expect(config.routes[0].stripPrefix == "/api")

        let missing = load(minimal(route: route))
        #expect(missing.errors.map(\.description) == [#"routes[0].strip_prefix: environment variable "PREFIX" is not set"#])

        let escaped = #"{ "name": "r", "upstream": "u", "match": { "headers": { "x-literal": "$${NOT_A_VAR}" } } }"#
        let literal = try #require(load(minimal(route: escaped)).config)
        #expect(literal.routes[0].match.headers[0].rule == .equals("${NOT_A_VAR}"))
    }

    // ${file:PATH} is the contents of a file (relative to the config's folder), less one final line break; a file
    // that is missing, not a regular file, too large or not UTF-8 is an error naming it, never showing its contents.
    @Test func secretFiles() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("secrets-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try "s3cret-token\r\n".write(to: directory.appendingPathComponent("token"), atomically: true, encoding: .utf8)
        try "line one\n\n".write(to: directory.appendingPathComponent("two-breaks"), atomically: true, encoding: .utf8)
        try Data(repeating: 0x61, count: 70_000).write(to: directory.appendingPathComponent("big"))
        try Data([0xFF, 0xFE]).write(to: directory.appendingPathComponent("binary"))
        let route = #"""
            { "name": "r", "upstream": "u", "request_headers": { "set": {
                "x-token": "Bearer ${file:token}", "x-again": "${file:\#(directory.path)/token}" } } }
            """#
        let loaded = ConfigLoader.load(text: minimal(route: route), environment: [:], baseDirectory: directory.path)
        let config = try #require(loaded.config, "\(loaded.errors)")
        let set = Dictionary(uniqueKeysWithValues: config.routes[0].requestHeaders.set.map { ($0.name, $0.value) })
        #expect(set["x-token"] == "Bearer s3cret-token" && set["x-again"] == "s3cret-token")
        #expect(config.reloadedFiles == [directory.path + "/token"], "a rotated secret is a change to watch")
        let two = #"{ "name": "r", "upstream": "u", "request_headers": { "set": { "x-two": "${file:two-breaks}" } } }"#
        #expect(ConfigLoader.load(text: minimal(route: two), environment: [:], baseDirectory: directory.path).errors.map(\.description) == [
            "routes[0].request_headers.set.x-two: header values may not contain control characters or line breaks"
        ], "only one line break is dropped")

        let bad = #"{ "name": "r", "upstream": "u", "request_headers": { "set": { "a": "${file:none}", "b": "${file:}", "c": "${file:.}", "d": "${file:big}", "e": "${file:binary}" } } }"#
        let failed = ConfigLoader.load(text: minimal(route: bad), environment: [:], baseDirectory: directory.path)
        #expect(failed.errors.map(\.description) == [
            "routes[0].request_headers.set.a: secret file none cannot be read: No such file or directory",
            #"routes[0].request_headers.set.b: "${file:}" names no file"#,
            "routes[0].request_headers.set.c: secret file . is not a regular file",
            "routes[0].request_headers.set.d: secret file big is larger than 64 KiB: ${file:} is for secrets",
            "routes[0].request_headers.set.e: secret file binary is not UTF-8 text",
        ])
    }

    // deny_ips_file / allow_ips_file (top level and per route): one range per line, `#` and `;` comments (Spamhaus DROP's
    // format), added to the inline lists; bad lines are errors with their numbers; the files are watched for reloads.
    @Test func addressListFiles() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lists-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try "; Spamhaus DROP List\n1.10.16.0/20 ; SBL256894\n\n  2001:db8::/32  # documentation\n203.0.113.7\n".write(
            to: directory.appendingPathComponent("drop.txt"), atomically: true, encoding: .utf8)
        try "10.0.0.0/8\n".write(to: directory.appendingPathComponent("office.txt"), atomically: true, encoding: .utf8)
        try "10.0.0.0/8\nnot-an-address\n300.1.1.1\n".write(to: directory.appendingPathComponent("bad.txt"), atomically: true, encoding: .utf8)
        let json = minimal(
            route: #"{ "name": "r", "upstream": "u", "allow_ips": ["192.0.2.1"], "allow_ips_file": "office.txt" }"#,
            extra: #""deny_ips": ["198.51.100.0/24"], "deny_ips_file": "drop.txt","#)
        let loaded = ConfigLoader.load(text: json, environment: [:], baseDirectory: directory.path)
        let config = try #require(loaded.config, "\(loaded.errors)")
        #expect(config.denyIPs.map(\.description) == ["198.51.100.0/24", "1.10.16.0/20", "2001:db8::/32", "203.0.113.7/32"])
        #expect(config.routes[0].allowIPs.map(\.description) == ["192.0.2.1/32", "10.0.0.0/8"])
        #expect(config.reloadedFiles == [directory.path + "/drop.txt", directory.path + "/office.txt"])

        let bad = ConfigLoader.load(text: minimal(extra: #""deny_ips_file": "bad.txt", "allow_ips_file": "none.txt","#), environment: [:], baseDirectory: directory.path)
        #expect(bad.errors.map(\.description) == [
            #"deny_ips_file: address list bad.txt: not an IP address or CIDR range at line 2 ("not-an-address"), line 3 ("300.1.1.1")"#,
            "allow_ips_file: address list none.txt cannot be read: No such file or directory",
        ])
    }

    // Upstream URLs: schemes, default ports, IPv6 literals; paths and credentials are refused.
    @Test func upstreamTargets() {
        #expect(UpstreamTarget(url: "http://example.com")?.port == 80)
        #expect(UpstreamTarget(url: "https://example.com")?.port == 443)
        #expect(UpstreamTarget(url: "http://[::1]:8080")?.authority == "[::1]:8080")
        #expect(UpstreamTarget(url: "HTTP://Example.COM:81/")?.authority == "example.com:81")
        for bad in ["example.com", "http://", "http://a:b", "http://user@host", "http://h/p", "http://h?x", "http://[zz]:1", "http://h:0"] {
            #expect(UpstreamTarget(url: bad) == nil, "\(bad)")
        }
    }

    // `protocol` on the upstream applies to its targets unless a target names its own; wrong values are errors.
    @Test func upstreamProtocols() throws {
        let json = """
            { "listeners": [{ "name": "l", "port": 1 }],
              "upstreams": { "u": { "protocol": "h2",
                                    "targets": ["http://127.0.0.1:9", { "url": "https://h:2", "protocol": "http/1.1" }] } },
              "routes": [{ "name": "r", "upstream": "u" }] }
            """
        let config = try #require(load(json).config)
        let targets = try #require(config.upstream(named: "u")).targets
        #expect(targets.map(\.httpProtocol) == [.h2, .http1])
        #expect(try #require(load(minimal()).config).upstreams[0].targets[0].httpProtocol == .http1)

        let bad = json.replacingOccurrences(of: #""protocol": "h2""#, with: #""protocol": "h3""#)
            .replacingOccurrences(of: #""protocol": "http/1.1""#, with: #""protocol": 2"#)
        #expect(
            load(bad).errors.map(\.description) == [
                #"upstreams.u.protocol: unknown value "h3" (did you mean "h2"?); expected one of "http/1.1", "h2""#,
                "upstreams.u.targets[1].protocol: expected a string, found a number",
            ])
    }

    // Whole-segment prefixes and stripping that keeps the query.
    @Test func pathRules() {
        #expect(PathRules.hasSegmentPrefix("/api", "/api"))
        #expect(PathRules.hasSegmentPrefix("/api/x", "/api"))
        #expect(PathRules.hasSegmentPrefix("/api/x", "/api/"))
        #expect(!PathRules.hasSegmentPrefix("/apix", "/api"))
        #expect(PathRules.hasSegmentPrefix("/anything", "/"))
    }

    // JSON syntax errors come with line and column.
    @Test func syntaxErrorsAreLocated() {
        let cases: [(String, String)] = [
            ("", "line 1, column 1: unexpected end of file, expected a value"),
            ("{\"a\": 1\n  \"b\": 2}", "line 2, column 3: expected ',' or '}'"),
            ("[1,]", "line 1, column 4: trailing comma before ']'"),
            ("{\"a\":01}", "line 1, column 7: numbers may not have leading zeros"),
            ("\"\\x\"", "line 1, column 4: invalid escape '\\x'"),
            ("{} {}", "line 1, column 4: unexpected content after the JSON document"),
            ("// comment\n{}", "line 1, column 1: unexpected character '/', expected a value"),
        ]
        for (text, message) in cases {
            do {
                _ = try JSONParser.parse(text)
                Issue.record("parsed: \(text)")
            } catch {
                #expect(error.description == message)
            }
        }
    }

    // Escapes, unicode and number kinds parse to the right values.
    @Test func parsesValues() throws {
        let value = try JSONParser.parse(#"{"s":"a\"b\\c\u00e9\ud83d\ude00","i":-12,"d":1.5e2,"t":true,"n":null,"a":[]}"#)
        #expect(
            value
                == .object([
                    ("s", .string("a\"b\\cé😀")), ("i", .integer(-12)), ("d", .double(150)), ("t", .bool(true)),
                    ("n", .null), ("a", .array([])),
                ]))
    }

    // Near misses get a suggestion; unrelated words do not.
    @Test func didYouMean() {
        #expect(closestMatch(to: "ordres", among: ["orders", "users"]) == "orders")
        #expect(closestMatch(to: "prot", among: ["port", "name"]) == "port")
        #expect(closestMatch(to: "zzz", among: ["port", "name"]) == nil)
    }

    // Rate limits must carry their algorithm's parameters.
    @Test func rateLimitShapes() {
        let good = #"{ "name": "r", "upstream": "u", "rate_limits": [{ "name": "w", "algorithm": "sliding_window", "key": "header:X-Tenant", "limit": 5, "window_seconds": 60 }] }"#
        #expect(load(minimal(route: good)).errors.isEmpty)
        let bad = #"{ "name": "r", "upstream": "u", "rate_limits": [{ "name": "w", "algorithm": "sliding_window", "key": "route", "capacity": 5 }] }"#
        #expect(
            load(minimal(route: bad)).errors.map(\.description) == [
                "routes[0].rate_limits[0].limit: sliding_window needs a limit",
                "routes[0].rate_limits[0].window_seconds: sliding_window needs window_seconds",
                "routes[0].rate_limits[0]: capacity and refill_per_second belong to token_bucket",
            ])
    }

    // CORS origins are whole origins (a path or trailing slash would never match what browsers send); `*` must
    // not be combined with credentials.
    @Test func corsShapes() {
        let good = #"{ "name": "r", "upstream": "u", "cors": { "allow_origins": ["https://app.test", "http://localhost:3000", "https://*.example.com"], "allow_methods": ["*"], "allow_headers": ["*"], "max_age_seconds": 600 } }"#
        #expect(load(minimal(route: good)).errors.isEmpty)
        #expect(load(minimal(route: good)).warnings.isEmpty)
        let bad = #"{ "name": "r", "upstream": "u", "cors": { "allow_origins": ["https://app.test/", "app.test", "https://a.*.test", "*"], "allow_methods": ["get"], "allow_credentials": true, "max_age_seconds": -1 } }"#
        let shape = "expected \"*\", an origin like \"https://app.example.com\" (scheme, host and port only, no path or trailing slash) or \"https://*.example.com\""
        #expect(
            load(minimal(route: bad)).errors.map(\.description) == [
                "routes[0].cors.allow_origins[0]: \(shape)",
                "routes[0].cors.allow_origins[1]: \(shape)",
                "routes[0].cors.allow_origins[2]: \(shape)",
                "routes[0].cors.allow_methods[0]: methods are case-sensitive (did you mean \"GET\"?)",
                "routes[0].cors.max_age_seconds: -1 is out of range (0...86400)",
                "routes[0].cors.allow_credentials: cannot be true with allow_origins \"*\" (browsers refuse it)",
            ])
    }

    // A cors route whose credentials browsers could not send cross-origin is flagged.
    @Test func corsWithoutTheRouteCredentials() {
        let auth = #""auth": { "api_keys": [{ "id": "k", "sha256": "\#(String(repeating: "a", count: 64))", "scopes": [] }], "jwt": { "keys": [{ "kid": "k", "alg": "HS256", "secret": "\#(String(repeating: "s", count: 32))" }] } },"#
        let route = { (require: String, cors: String) in
            #"{ "name": "r", "upstream": "u", "auth": { "require": [\#(require)] }, "cors": { "allow_origins": ["https://app.test"] \#(cors) } }"#
        }
        let jwtMissing = load(minimal(route: route(#""jwt""#, ""), extra: auth)).warnings.map(\.description)
        let keyMissing = load(minimal(route: route(#""api_key""#, #", "allow_headers": ["Content-Type"]"#), extra: auth)).warnings.map(\.description)
        let neither = load(minimal(route: route(#""jwt", "api_key""#, ""), extra: auth)).warnings.count
        let listed = load(minimal(route: route(#""jwt", "api_key""#, #", "allow_headers": ["x-api-key"]"#), extra: auth)).warnings
        let wildcard = load(minimal(route: route(#""jwt", "api_key""#, #", "allow_headers": ["*"]"#), extra: auth)).warnings
        #expect(jwtMissing == [#"warning: routes[0].cors: browsers cannot send this route's credentials cross-origin; it needs "Authorization" in allow_headers for the JWT"#])
        #expect(keyMissing == [#"warning: routes[0].cors: browsers cannot send this route's credentials cross-origin; it needs "X-API-Key" in allow_headers for the API key"#])
        let cookieAuth = auth.replacingOccurrences(of: #""jwt": {"#, with: #""jwt": { "cookie": "session","#)
        let cookie = load(minimal(route: route(#""jwt""#, #", "allow_credentials": true"#), extra: cookieAuth)).warnings
        let cookieWithoutCredentials = load(minimal(route: route(#""jwt""#, ""), extra: cookieAuth)).warnings.map(\.description)
        #expect(cookie.isEmpty)
        #expect(cookieWithoutCredentials == [#"warning: routes[0].cors: browsers cannot send this route's credentials cross-origin; it needs "Authorization" in allow_headers for the JWT (or allow_credentials for its cookie)"#])
        #expect(neither == 1)
        #expect(listed.isEmpty)
        #expect(wildcard.isEmpty)
    }

    // rediss:// takes the client TLS settings upstreams use; they are flagged where they do nothing or weaken it.
    @Test func redisTLS() throws {
        let tls = #""redis": { "url": "rediss://:pw@redis.internal:6380/0", "tls": { "server_name": "redis.internal" } },"#
        let loaded = load(minimal(extra: tls))
        #expect(loaded.errors.isEmpty)
        #expect(loaded.warnings.isEmpty)
        let redis = try #require(loaded.config?.redis)
        #expect(redis.usesTLS)
        #expect(redis.tls.serverName == "redis.internal")
        let plain = load(minimal(extra: #""redis": { "url": "redis://127.0.0.1", "tls": { "insecure_skip_verify": true } },"#)).warnings.map(\.description)
        #expect(plain == ["warning: redis.tls: unused: the url is not rediss://"])
        let insecure = load(minimal(extra: #""redis": { "url": "rediss://127.0.0.1", "tls": { "insecure_skip_verify": true } },"#)).warnings.map(\.description)
        #expect(insecure == ["warning: redis.tls.insecure_skip_verify: the Redis certificate is not verified: anyone on the path can impersonate Redis"])
        let wrong = load(minimal(extra: #""redis": { "url": "http://127.0.0.1" },"#)).errors.map(\.description)
        #expect(wrong == ["redis.url: expected a redis://, rediss:// (TLS) or unix:// URL"])
    }

    // tls.passthrough: rules of server names and an upstream; a listener of rules alone needs no certificates; the
    // upstream must exist; names match exactly or by a *. pattern, without case.
    @Test func tlsPassthroughShapes() throws {
        func load(_ tls: String) -> ConfigLoadResult {
            self.load(#"{ "listeners": [{ "name": "edge", "port": 443, "tls": \#(tls) }], "upstreams": { "db": { "targets": ["https://10.0.0.5:5433"] } }, "routes": [{ "name": "r", "upstream": "db" }] }"#)
        }
        let relayOnly = load(#"{ "passthrough": [{ "server_names": ["db.example.com", "*.apps.example.com"], "upstream": "db", "proxy_protocol": true }] }"#)
        #expect(relayOnly.errors.isEmpty, "\(relayOnly.errors)")
        let rule = try #require(relayOnly.config?.listeners.first?.tls?.passthrough.first)
        #expect(rule.upstream == "db" && rule.proxyProtocol && relayOnly.config?.listeners.first?.tls?.certificates.isEmpty == true)
        #expect(rule.matches("DB.example.com") && rule.matches("x.apps.example.com") && !rule.matches("apps.example.com") && !rule.matches("example.com"))
        #expect(load(#"{ "passthrough": [{ "server_names": ["db.example.com"], "upstream": "dbb" }] }"#).errors.map(\.description) == [
            #"listeners[0].tls.passthrough[0].upstream: unknown upstream "dbb" (did you mean "db"?)"#
        ])
        #expect(load(#"{ "passthrough": [{ "server_names": [], "upstream": "db" }] }"#).errors.map(\.description) == [
            "listeners[0].tls.passthrough[0].server_names: name at least one server"
        ])
        #expect(load(#"{ "certificates": [] }"#).errors.map(\.description) == [
            "listeners[0].tls.certificates: at least one certificate is required (or passthrough rules alone)"
        ])
    }

    // via: off by default; true is the pseudonym "gateway"; a pseudonym must be a token.
    @Test func viaShapes() throws {
        #expect(load(minimal()).config?.via == nil)
        #expect(load(minimal(extra: #""via": true,"#)).config?.via == "gateway")
        #expect(load(minimal(extra: #""via": false,"#)).config?.via == nil)
        #expect(load(minimal(extra: #""via": "edge-1","#)).config?.via == "edge-1")
        #expect(load(minimal(extra: #""via": "edge 1","#)).errors.map(\.description) == [
            "via: expected true, false or a pseudonym (letters, digits and -._~ and the like: RFC 9110's token), such as edge-1"
        ])
    }

    // redis.sentinels: the URL names the master group (no port); each sentinel is HOST[:PORT] (26379 by default).
    @Test func redisSentinels() throws {
        let loaded = load(minimal(extra: #""redis": { "url": "redis://:pw@gw-main/2", "sentinels": ["10.0.0.1", "sentinel-2.internal:26380", "[fd00::3]:26379"], "sentinel_password": "s" },"#))
        #expect(loaded.errors.isEmpty && loaded.warnings.isEmpty, "\(loaded.errors) \(loaded.warnings)")
        let redis = try #require(loaded.config?.redis)
        #expect(redis.sentinels == [
            RedisConfig.Sentinel(host: "10.0.0.1", port: 26379), RedisConfig.Sentinel(host: "sentinel-2.internal", port: 26380),
            RedisConfig.Sentinel(host: "fd00::3", port: 26379),
        ])
        #expect(redis.sentinelPassword == "s")
        let shown = try #require(loaded.config?.source).redactingSecrets().rendered
        #expect(shown.contains(#""sentinel_password":"<redacted>""#), "\(shown)")
        let bad = load(minimal(extra: #""redis": { "url": "redis://gw-main:6379", "sentinels": ["10.0.0.1:0", ""] },"#)).errors.map(\.description)
        #expect(bad.count == 3, "\(bad)")
        #expect(bad.contains("redis.sentinels[0]: expected a sentinel's HOST:PORT (an address or a name; the port defaults to 26379)"))
        #expect(bad.contains("redis.url: with sentinels the URL's host is the master group's name (redis://:PASSWORD@mymaster/0), without a port"))
        let empty = load(minimal(extra: #""redis": { "url": "redis://gw-main", "sentinels": [] },"#)).errors.map(\.description)
        #expect(empty == ["redis.sentinels: list at least one sentinel, or leave sentinels out"])
        let unused = load(minimal(extra: #""redis": { "url": "redis://127.0.0.1", "sentinel_password": "s" },"#)).warnings.map(\.description)
        #expect(unused == ["warning: redis.sentinel_password: unused without sentinels"])
    }

    // Route address rules take addresses and CIDR ranges, each mistake reported at its index.
    @Test func routeAddressRules() throws {
        let good = load(minimal(route: #"{ "name": "r", "upstream": "u", "allow_ips": ["10.0.0.0/8", "::1"], "deny_ips": ["10.9.0.0/16"] }"#))
        let route = try #require(good.config?.routes.first)
        #expect(route.allowIPs.map(\.description) == ["10.0.0.0/8", "::1/128"])
        #expect(route.denyIPs.map(\.description) == ["10.9.0.0/16"])
        let bad = load(minimal(route: #"{ "name": "r", "upstream": "u", "allow_ips": ["10.0.0.0/33", "intranet"] }"#)).errors.map(\.description)
        #expect(bad == [
            #"routes[0].allow_ips[0]: "10.0.0.0/33" is not an IP address or CIDR range (e.g. "10.0.0.0/8")"#,
            #"routes[0].allow_ips[1]: "intranet" is not an IP address or CIDR range (e.g. "10.0.0.0/8")"#,
        ])
    }

    // Header edits take header names and safe values; fields the gateway owns cannot be edited.
    @Test func routeHeaderEdits() throws {
        let good = load(minimal(route: #"{ "name": "r", "upstream": "u", "request_headers": { "remove": ["X-Debug"], "set": { "X-Tenant": "acme" } }, "response_headers": { "set": { "Cache-Control": "no-store" } } }"#))
        let route = try #require(good.config?.routes.first)
        #expect(route.requestHeaders.remove == ["x-debug"])
        let requestSet = route.requestHeaders.set.map { "\($0.name)=\($0.value)" }
        let responseSet = route.responseHeaders.set.map { "\($0.name)=\($0.value)" }
        #expect(requestSet == ["x-tenant=acme"])
        #expect(responseSet == ["cache-control=no-store"])
        let bad = load(minimal(route: #"{ "name": "r", "upstream": "u", "request_headers": { "remove": ["Host"], "set": { "X-Auth-Subject": "admin", "x-a": "1\r\nx-b: 2", "bad name": "x" } }, "response_headers": { "remove": ["Transfer-Encoding"] } }"#)).errors.map(\.description)
        #expect(bad == [
            "routes[0].request_headers.remove[0]: Host is set by the gateway itself and cannot be changed here",
            "routes[0].request_headers.set.X-Auth-Subject: X-Auth-Subject is set by the gateway itself and cannot be changed here",
            "routes[0].request_headers.set.x-a: header values may not contain control characters or line breaks",
            #"routes[0].request_headers.set["bad name"]: "bad name" is not a valid header name"#,
            "routes[0].response_headers.remove[0]: Transfer-Encoding is set by the gateway itself and cannot be changed here",
        ])
        let variables = try #require(load(minimal(route: #"{ "name": "r", "upstream": "u", "request_headers": { "set_from": { "X-Real-IP": "client_ip", "X-Consumer": "consumer" } } }"#)).config?.routes.first)
        let setFrom = variables.requestHeaders.setFrom.map { "\($0.name)=\($0.value.rawValue)" }
        #expect(setFrom == ["x-real-ip=client_ip", "x-consumer=consumer"])
        let wrong = load(minimal(route: #"{ "name": "r", "upstream": "u", "request_headers": { "set": { "X-A": "1" }, "set_from": { "x-a": "route", "X-B": "remote_addr", "Host": "host" } } }"#)).errors.map(\.description)
        #expect(wrong.count == 3, "\(wrong)")
        #expect(wrong.contains("routes[0].request_headers.set_from.x-a: x-a is also in set: give it one value"))
        #expect(wrong.contains("routes[0].request_headers.set_from.Host: Host is set by the gateway itself and cannot be changed here"))
        let unknownValue = wrong.first { $0.hasPrefix("routes[0].request_headers.set_from.X-B: ") }
        #expect(unknownValue?.contains("client_ip") == true, "\(wrong)")
    }

    // A PROXY protocol listener needs trusted_proxies: only those peers may say who the client is.
    @Test func proxyProtocolNeedsTrustedProxies() {
        let listener = #""listeners": [{ "name": "l", "port": 1, "proxy_protocol": true }],"#
        let config = { (trusted: String) in
            #"{ \#(trusted) \#(listener) "upstreams": { "u": { "targets": ["http://127.0.0.1:9"] } }, "routes": [{ "name": "r", "upstream": "u" }] }"#
        }
        let without = load(config("")).errors.map(\.description)
        #expect(without == ["listeners[0].proxy_protocol: needs trusted_proxies: the load balancers allowed to send the header (connections from anyone else are refused)"])
        let with = load(config(#""trusted_proxies": ["10.0.0.0/8"],"#))
        #expect(with.errors.isEmpty)
        #expect(with.config?.listeners.first?.proxyProtocol == true)
    }

    // dns_refresh_ms: host-name targets become one target per address; IP literals and unresolved names stay.
    @Test func dnsDiscoveryShapes() throws {
        let config = { (upstream: String) in
            #"{ "listeners": [{ "name": "l", "port": 1 }], "upstreams": { "u": \#(upstream) }, "routes": [{ "name": "r", "upstream": "u" }] }"#
        }
        let loaded = load(config(#"{ "targets": ["https://api.internal:8443", { "url": "http://10.0.0.9:80", "weight": 2 }, "http://other.internal:81"], "dns_refresh_ms": 5000 }"#))
        #expect(loaded.errors.isEmpty)
        let upstream = try #require(loaded.config?.upstreams.first)
        #expect(upstream.dnsRefreshMs == 5000)
        #expect(upstream.discoveredHosts == ["api.internal", "other.internal"])
        let answers = ["api.internal": ["10.0.0.2", "10.0.0.1", "fd00::1"]]
        let expanded = upstream.expandingTargets(addresses: { answers[$0] })
        #expect(expanded.targets.map(\.label) == ["10.0.0.1:8443", "10.0.0.2:8443", "[fd00::1]:8443", "10.0.0.9:80", "other.internal:81"])
        #expect(expanded.targets.map(\.authority) == ["api.internal:8443", "api.internal:8443", "api.internal:8443", "10.0.0.9:80", "other.internal:81"])
        #expect(expanded.targets.map(\.connectHost) == ["10.0.0.1", "10.0.0.2", "fd00::1", "10.0.0.9", "other.internal"])
        #expect(expanded.targets.map(\.weight) == [1, 1, 1, 2, 1])
        #expect(expanded.discoveredHosts == ["other.internal"], "an expanded target is not resolved again")
        let shuffled = ["api.internal": ["10.0.0.1", "fd00::1", "10.0.0.2"]]
        let same = upstream.expandingTargets(addresses: { shuffled[$0] })
        #expect(same == expanded, "the same answer in another order builds the same config")

        let off = try #require(load(config(#"{ "targets": ["http://api.internal:80"] }"#)).config?.upstreams.first)
        #expect(off.discoveredHosts.isEmpty)
        let one = ["api.internal": ["10.0.0.1"]]
        let unexpanded = off.expandingTargets(addresses: { one[$0] })
        #expect(unexpanded == off, "without dns_refresh_ms names resolve at connect")

        // An SRV name: one target per address of each instance, its port and weight; higher priorities are backups.
        let srv = load(config(#"{ "targets": [{ "url": "https://_api._tcp.orders.service.consul", "weight": 2 }], "dns_refresh_ms": 5000, "dns_server": "127.0.0.1:8600" }"#))
        #expect(srv.errors.isEmpty && srv.warnings.isEmpty, "\(srv.errors) \(srv.warnings)")
        let service = try #require(srv.config?.upstreams.first)
        #expect(service.dnsServer == DNSServerAddress(host: "127.0.0.1", port: 8600))
        #expect(service.discoveredServices == ["_api._tcp.orders.service.consul"] && service.discoveredHosts.isEmpty)
        let instances = [
            DiscoveredInstance(priority: 1, weight: 0, host: "c.node.consul", port: 7000, address: "10.0.0.3"),
            DiscoveredInstance(priority: 0, weight: 3, host: "a.node.consul", port: 7001, address: "10.0.0.1"),
            DiscoveredInstance(priority: 0, weight: 1, host: "b.node.consul", port: 7002, address: "10.0.0.2"),
        ]
        let found = service.expandingTargets(addresses: { _ in nil }, services: { $0 == "_api._tcp.orders.service.consul" ? instances : nil })
        #expect(found.targets.map(\.authority) == ["a.node.consul:7001", "b.node.consul:7002", "c.node.consul:7000"])
        #expect(found.targets.map(\.connectHost) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"])
        #expect(found.targets.map(\.weight) == [6, 2, 2] && found.targets.map(\.backup) == [false, false, true])
        let schemes = Set(found.targets.map(\.scheme))
        #expect(schemes == [.https] && found.discoveredServices.isEmpty)
        #expect(load(config(#"{ "targets": ["http://_api._tcp.orders.service.consul"] }"#)).errors.map(\.description) == [
            "upstreams.u.targets[0]: _api._tcp.orders.service.consul is an SRV name: its instances are looked up with dns_refresh_ms"
        ])
        #expect(load(config(#"{ "targets": ["http://a.internal"], "dns_refresh_ms": 1000, "dns_server": "dns.internal:53" }"#)).errors.map(\.description) == [
            "upstreams.u.dns_server: expected an IPv4 address and an optional port, such as 127.0.0.1:8600"
        ])
        #expect(load(config(#"{ "targets": ["http://a.internal"], "dns_refresh_ms": 1000, "dns_server": "10.0.0.53" }"#)).config?.upstreams.first?.dnsServer?.port == 53)

        let ips = load(config(#"{ "targets": ["http://10.0.0.1:80"], "dns_refresh_ms": 1000 }"#)).warnings.map(\.description)
        #expect(ips == ["warning: upstreams.u.dns_refresh_ms: every target is an IP address or a Unix socket: there is nothing to resolve"])
        let tooFast = load(config(#"{ "targets": ["http://a.internal:80"], "dns_refresh_ms": 10 }"#)).errors.map(\.description)
        #expect(tooFast == ["upstreams.u.dns_refresh_ms: 10 is out of range (100...86400000)"])
    }

    // path_template stands alone; rewrite_path needs it, names its variables, and replaces strip/add_prefix.
    @Test func pathTemplateShapes() throws {
        let good = load(minimal(route: #"{ "name": "r", "upstream": "u", "match": { "path_template": "/u/{id}" }, "rewrite_path": "/users/{id}" }"#))
        #expect(good.errors.isEmpty)
        #expect(good.config?.routes.first?.match.pathTemplate?.variables == ["id"])
        #expect(good.config?.routes.first?.rewritePath?.description == "/users/{id}")
        let bad = load(minimal(route: #"{ "name": "r", "upstream": "u", "match": { "path_template": "/u/{id}", "path_prefix": "/u" }, "rewrite_path": "/users/{uid}", "strip_prefix": "/u" }"#)).errors.map(\.description)
        #expect(bad == [
            "routes[0].match.path_template: use one of path, path_prefix and path_template",
            "routes[0].rewrite_path: \"/users/{uid}\": {uid} is not a variable of the path_template (it has {id})",
            "routes[0].strip_prefix: rewrite_path sets the whole upstream path; drop strip_prefix",
        ])
        let alone = load(minimal(route: #"{ "name": "r", "upstream": "u", "rewrite_path": "/x" }"#)).errors.map(\.description)
        #expect(alone == ["routes[0].rewrite_path: needs match.path_template: its variables build the new path"])
        let broken = load(minimal(route: #"{ "name": "r", "upstream": "u", "match": { "path_template": "/u/**/x" }, "rewrite_path": "/x" }"#)).errors.map(\.description)
        #expect(broken == [#"routes[0].match.path_template: "/u/**/x": ** (the rest of the path) can only be the last segment"#])
    }

    // match.query: a string value or true/false; anything else is an error.
    @Test func queryConditionShapes() throws {
        let good = load(minimal(route: #"{ "name": "r", "upstream": "u", "match": { "query": { "v": "2", "debug": true, "beta": false } } }"#))
        #expect(good.errors.isEmpty)
        let query = try #require(good.config?.routes.first?.match.query)
        #expect(query.map(\.name) == ["v", "debug", "beta"])
        #expect(query.map(\.rule) == [.equals("2"), .present(true), .present(false)])
        let bad = load(minimal(route: #"{ "name": "r", "upstream": "u", "match": { "query": { "v": 2, "": "x" } } }"#)).errors.map(\.description)
        #expect(bad == [
            "routes[0].match.query.v: expected a string (the value) or true/false (present or absent)",
            #"routes[0].match.query[""]: a query parameter needs a name"#,
        ])
    }

    // match.client_ips: addresses and CIDR ranges; a bad entry and an empty list are errors at their path.
    @Test func clientConditionShapes() throws {
        let good = load(minimal(route: #"{ "name": "r", "upstream": "u", "match": { "client_ips": ["10.0.0.0/8", "::1"] } }"#))
        #expect(good.errors.isEmpty)
        #expect(good.config?.routes.first?.match.clientIPs.map(\.description) == ["10.0.0.0/8", "::1/128"])
        let bad = load(minimal(route: #"{ "name": "r", "upstream": "u", "match": { "client_ips": ["10.0.0.0/33", "unix:"] } }"#)).errors.map(\.description)
        #expect(bad == [
            #"routes[0].match.client_ips[0]: "10.0.0.0/33" is not an IP address or CIDR range (e.g. "10.0.0.0/8")"#,
            #"routes[0].match.client_ips[1]: "unix:" is not an IP address or CIDR range (e.g. "10.0.0.0/8")"#,
        ])
        let empty = load(minimal(route: #"{ "name": "r", "upstream": "u", "match": { "client_ips": [] } }"#)).errors.map(\.description)
        #expect(empty == ["routes[0].match.client_ips: an empty list matches no client; leave client_ips out to match every client"])
    }

    // slow_start_ms: a duration; a hash ring ignores it (a warning says so).
    @Test func slowStartShapes() throws {
        let config = { (upstream: String) in
            #"{ "listeners": [{ "name": "l", "port": 1 }], "upstreams": { "u": \#(upstream) }, "routes": [{ "name": "r", "upstream": "u" }] }"#
        }
        #expect(load(config(#"{ "targets": ["http://10.0.0.1:80"], "slow_start_ms": 30000 }"#)).config?.upstreams.first?.slowStartMs == 30000)
        let ring = load(config(#"{ "targets": ["http://10.0.0.1:80"], "slow_start_ms": 30000, "balance": "consistent_hash" }"#)).warnings.map(\.description)
        #expect(ring == ["warning: upstreams.u.slow_start_ms: consistent_hash keeps its ring: slow start does not apply to it"])
        let zero = load(config(#"{ "targets": ["http://10.0.0.1:80"], "slow_start_ms": 0 }"#)).errors.map(\.description)
        #expect(zero == ["upstreams.u.slow_start_ms: 0 is out of range (1...3600000)"])
    }

    // A route's retries: attempts only (the rest is the upstream's), and only where the upstream has retries.
    @Test func routeRetryShapes() throws {
        let config = { (upstream: String, route: String) in
            #"{ "listeners": [{ "name": "l", "port": 1 }], "upstreams": { "u": \#(upstream) }, "routes": [\#(route)] }"#
        }
        let plain = #"{ "targets": ["http://10.0.0.1:80"] }"#
        let retrying = #"{ "targets": ["http://10.0.0.1:80"], "retries": { "attempts": 1 } }"#
        #expect(load(config(retrying, #"{ "name": "r", "upstream": "u", "retries": { "attempts": 4 } }"#)).config?.routes.first?.retryAttempts == 4)
        #expect(load(config(plain, #"{ "name": "r", "upstream": "u", "retries": { "attempts": 0 } }"#)).errors.isEmpty, "turning retries off always works")
        let missing = load(config(plain, #"{ "name": "r", "upstream": "u", "retries": { "attempts": 2 } }"#)).errors.map(\.description)
        #expect(missing == [#"routes[0].retries.attempts: upstream "u" has no retries section: its statuses, backoff and budget are what retries follow"#])
        let extra = load(config(retrying, #"{ "name": "r", "upstream": "u", "retries": { "attempts": 1, "backoff_ms": 5 } }"#)).errors.map(\.description)
        #expect(extra == [#"routes[0].retries.backoff_ms: unknown key; known keys here: "attempts", "hedge_after_ms""#])
    }

    // Hedging: an upstream's hedge_after_ms (1 ms or more), a route's own (0 turns it off), never without the
    // upstream's retry budget.
    @Test func hedgeShapes() throws {
        let config = { (upstream: String, route: String) in
            #"{ "listeners": [{ "name": "l", "port": 1 }], "upstreams": { "u": \#(upstream) }, "routes": [\#(route)] }"#
        }
        let plain = #"{ "targets": ["http://10.0.0.1:80"] }"#
        let hedging = #"{ "targets": ["http://10.0.0.1:80"], "retries": { "hedge_after_ms": 50 } }"#
        #expect(load(config(hedging, #"{ "name": "r", "upstream": "u" }"#)).config?.upstreams.first?.retries?.hedgeAfterMs == 50)
        let route = try #require(load(config(hedging, #"{ "name": "r", "upstream": "u", "retries": { "hedge_after_ms": 0 } }"#)).config?.routes.first)
        #expect(route.hedgeAfterMs == 0 && route.retryAttempts == nil)
        let mistakes = load(config(#"{ "targets": ["http://10.0.0.1:80"], "retries": { "hedge_after_ms": 0 } }"#, #"{ "name": "r", "upstream": "u", "retries": {} }"#))
        #expect(mistakes.errors.map(\.description) == [
            "upstreams.u.retries.hedge_after_ms: 0 is out of range (1...86400000)",
            "routes[0].retries: give attempts, hedge_after_ms, or both",
        ])
        let late = load(config(#"{ "targets": ["http://10.0.0.1:80"], "retries": { "hedge_after_ms": 500, "per_try_timeout_ms": 400 } }"#, #"{ "name": "r", "upstream": "u" }"#))
        #expect(late.warnings.map(\.description) == ["warning: upstreams.u.retries.hedge_after_ms: is not shorter than the timeouts (400 ms), so no hedge is ever sent"])
        let unbudgeted = load(config(plain, #"{ "name": "r", "upstream": "u", "retries": { "hedge_after_ms": 80 } }"#)).errors.map(\.description)
        #expect(unbudgeted == [#"routes[0].retries.hedge_after_ms: upstream "u" has no retries section: hedges are limited by its retry budget"#])
    }

    // concurrency_limit: max required, key as for rate limits (default ip).
    @Test func concurrencyLimitShapes() throws {
        let good = load(minimal(route: #"{ "name": "r", "upstream": "u", "concurrency_limit": { "max": 5 } }"#))
        #expect(good.config?.routes.first?.concurrencyLimit == ConcurrencyLimitConfig(key: .ip, max: 5))
        let header = load(minimal(route: #"{ "name": "r", "upstream": "u", "concurrency_limit": { "key": "header:X-Tenant", "max": 50 } }"#))
        #expect(header.config?.routes.first?.concurrencyLimit?.key == .header("x-tenant"))
        let bad = load(minimal(route: #"{ "name": "r", "upstream": "u", "concurrency_limit": { "key": "client", "max": 0 } }"#)).errors.map(\.description)
        #expect(bad == [
            #"routes[0].concurrency_limit.key: unknown key "client"; expected "ip", "consumer", "route", "header:NAME" or "claim:NAME""#,
            "routes[0].concurrency_limit.max: 0 is out of range (1...1000000)",
        ])
    }

    // auth.mtls_clients: a subject or a common name per consumer; "mtls" on a route needs them.
    @Test func mtlsClientShapes() throws {
        let good = load(minimal(
            route: #"{ "name": "r", "upstream": "u", "auth": { "require": ["mtls"] } }"#,
            extra: #""auth": { "mtls_clients": [{ "id": "a", "subject": "CN=a,O=X" }, { "id": "b", "common_name": "b", "scopes": ["s"] }] },"#))
        #expect(good.errors.isEmpty)
        #expect(good.config?.auth?.mtlsClients == [
            MTLSClientConfig(id: "a", subject: "CN=a,O=X", commonName: nil, scopes: []),
            MTLSClientConfig(id: "b", subject: nil, commonName: "b", scopes: ["s"]),
        ])
        #expect(good.warnings.map(\.description) == [
            #"warning: routes[0].auth.require: "mtls": no listener asks for client certificates (tls.client_auth), so no request can present one"#
        ])
        let bad = load(minimal(
            route: #"{ "name": "r", "upstream": "u", "auth": { "require": ["mtls"] } }"#,
            extra: #""auth": { "mtls_clients": [{ "id": "a" }, { "id": "a", "subject": "CN=a", "common_name": "a" }, { "id": "c", "uri": "not a uri" }, { "id": "d", "common_name": "d", "uri": "spiffe://x/y" }] },"#)).errors.map(\.description)
        #expect(bad == [
            "auth.mtls_clients[0]: give the certificate's subject, its common_name or a uri it carries",
            "auth.mtls_clients[1].common_name: give one of subject, common_name and uri",
            "auth.mtls_clients[2].uri: expected a URI such as spiffe://example.org/ns/billing/sa/api",
            "auth.mtls_clients[3].uri: give one of subject, common_name and uri",
            #"auth.mtls_clients[1].id: duplicate consumer id "a""#,
        ])
        let spiffe = load(minimal(extra: #""auth": { "mtls_clients": [{ "id": "api", "uri": "spiffe://example.org/ns/billing/sa/api" }] },"#))
        #expect(spiffe.config?.auth?.mtlsClients.first?.uri == "spiffe://example.org/ns/billing/sa/api")
        let missing = load(minimal(route: #"{ "name": "r", "upstream": "u", "auth": { "require": ["mtls"] } }"#)).errors.map(\.description)
        #expect(missing == [#"routes[0].auth.require: "mtls" needs auth.mtls_clients to be configured"#])
        // Consumer ids and scopes go upstream in X-Auth-* fields: no line breaks.
        let broken = load(minimal(extra: #"""
            "auth": { "mtls_clients": [{ "id": "a\r\nX-Admin: 1", "common_name": "a" }],
                      "api_keys": [{ "id": "k", "sha256": "\#(String(repeating: "a", count: 64))", "scopes": ["s\n"] }] },
            """#)).errors.map(\.description)
        #expect(broken == [
            "auth.api_keys[0].scopes[0]: cannot contain control characters or line breaks (it goes upstream in an X-Auth-* header)",
            "auth.mtls_clients[0].id: cannot contain control characters or line breaks (it goes upstream in an X-Auth-* header)",
        ])
    }

    // auth.basic: users with accepted, complete hashes; "basic" on a route needs it; ids unique across credentials.
    @Test func basicAuthShapes() throws {
        let bcrypt = "$2y$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e"
        let good = load(minimal(
            route: #"{ "name": "r", "upstream": "u", "auth": { "require": ["jwt", "basic"] } }"#,
            extra: #""auth": { "jwt": { "keys": [{ "alg": "HS256", "secret": "0123456789abcdef0123456789abcdef" }] }, "basic": { "realm": "Ops area", "users": [{ "username": "ops", "password_hash": "\#(bcrypt)", "scopes": ["admin"] }] } },"#))
        #expect(good.errors.isEmpty)
        let basic = try #require(good.config?.auth?.basic)
        #expect(basic.users == [BasicAuthConfig.User(username: "ops", passwordHash: bcrypt, scopes: ["admin"])])
        #expect(basic.realm == "Ops area" && basic.cacheSize == 1024 && basic.maxPendingChecks == 64 && basic.htpasswdFile == nil)
        #expect(good.config?.routes.first?.auth?.require == [.jwt, .basic])
        #expect(good.warnings.map(\.description) == [
            #"warning: routes[0].auth.require: "basic" sends passwords in clear text on plaintext listener "l" (limit the route to TLS listeners with match.listeners)"#
        ])

        let bad = load(minimal(
            route: #"{ "name": "r", "upstream": "u", "auth": { "require": ["basic"] } }"#,
            extra: #"""
                "auth": { "api_keys": [{ "id": "ops", "sha256": "\#(String(repeating: "a", count: 64))" }],
                          "basic": { "realm": "say \"hi\"", "max_pending_checks": 0, "users": [
                            { "username": "a:b", "password_hash": "\#(bcrypt)" },
                            { "username": "md5", "password_hash": "$apr1$saltsalt$Q17bmANhIA7pctgRGqF/S0" },
                            { "username": "cut", "password_hash": "$2y$04$abcdefghijklmnopqrstuu" },
                            { "username": "ops", "password_hash": "\#(bcrypt)" },
                            { "username": "ops", "password_hash": "\#(bcrypt)" }] } },
                """#)).errors.map(\.description)
        #expect(bad.count == 7, "\(bad)")
        #expect(bad.contains("auth.basic.users[0].username: a user name cannot contain a colon or control characters"))
        let weakHash = bad.first { $0.hasPrefix("auth.basic.users[1].password_hash: ") }
        #expect(weakHash?.contains("expected a bcrypt ($2y$)") == true)
        #expect(bad.contains("auth.basic.users[2].password_hash: is not a complete hash (cut short, or only a salt)"))
        #expect(bad.contains("auth.basic.realm: a realm cannot contain quotes or backslashes"))
        #expect(bad.contains("auth.basic.max_pending_checks: 0 is out of range (1...100000)"))
        #expect(bad.contains(#"auth.basic.users[4].username: duplicate user "ops""#))
        #expect(bad.contains(#"auth.basic.users[3].username: duplicate consumer id "ops" (an API key or client certificate has it)"#))

        #expect(basic.maxFailures == BasicAuthConfig.FailureLimit(limit: 20, windowSeconds: 300))
        let users = #""users": [{ "username": "ops", "password_hash": "\#(bcrypt)" }]"#
        let off = load(minimal(extra: #""auth": { "basic": { \#(users), "max_failures": null } },"#))
        #expect(off.errors.isEmpty && off.config?.auth?.basic?.maxFailures == nil)
        let tuned = load(minimal(extra: #""auth": { "basic": { \#(users), "max_failures": { "limit": 5, "window_seconds": 900 } } },"#))
        #expect(tuned.config?.auth?.basic?.maxFailures == BasicAuthConfig.FailureLimit(limit: 5, windowSeconds: 900))
        let wrong = load(minimal(extra: #""auth": { "basic": { \#(users), "max_failures": { "limit": 0 } } },"#)).errors.map(\.description)
        #expect(wrong == ["auth.basic.max_failures.limit: 0 is out of range (1...1000000)", "auth.basic.max_failures.window_seconds: missing required key"])

        let empty = load(minimal(route: #"{ "name": "r", "upstream": "u" }"#, extra: #""auth": { "basic": {} },"#)).errors.map(\.description)
        #expect(empty == ["auth.basic: give users, an htpasswd_file, or both"])
        let missing = load(minimal(route: #"{ "name": "r", "upstream": "u", "auth": { "require": ["basic"] } }"#)).errors.map(\.description)
        #expect(missing == [#"routes[0].auth.require: "basic" needs auth.basic to be configured"#])
    }

    // auth.introspection: an upstream that exists, a path, the client's credentials; "introspection" on a route
    // needs it; the client secret is hidden from the admin API's view of the config.
    @Test func introspectionShapes() throws {
        let section = #""auth": { "introspection": { "upstream": "u", "path": "/oauth2/introspect", "client_id": "gw", "client_secret": "s3cret", "audiences": ["orders-api"] } },"#
        let good = load(minimal(route: #"{ "name": "r", "upstream": "u", "auth": { "require": ["introspection"] } }"#, extra: section))
        #expect(good.errors.isEmpty)
        let introspection = try #require(good.config?.auth?.introspection)
        #expect(introspection.upstream == "u" && introspection.path == "/oauth2/introspect" && introspection.clientID == "gw")
        #expect(introspection.timeoutMs == 1_000 && introspection.cacheSeconds == 30 && introspection.cacheSize == 10_000)
        #expect(introspection.audiences == ["orders-api"] && introspection.issuer == nil)
        let shown = try #require(good.config?.source).redactingSecrets().rendered
        #expect(!shown.contains("s3cret"))

        let bad = load(minimal(extra: #""auth": { "introspection": { "upstream": "uu", "path": "introspect", "client_id": "gw" } },"#)).errors.map(\.description)
        #expect(bad == [
            #"auth.introspection.path: "introspect" must be a path starting with "/" (no query, fragment or spaces)"#,
            "auth.introspection.client_secret: missing required key",
        ])
        let missing = load(minimal(route: #"{ "name": "r", "upstream": "u", "auth": { "require": ["introspection"] } }"#)).errors.map(\.description)
        #expect(missing == [#"routes[0].auth.require: "introspection" needs auth.introspection to be configured"#])
        let unknown = load(minimal(extra: #""auth": { "introspection": { "upstream": "idp", "path": "/i", "client_id": "gw", "client_secret": "s" } },"#)).errors.map(\.description)
        #expect(unknown == [#"auth.introspection.upstream: unknown upstream "idp""#])
    }

    // logging.access_log_format: json (the default) or combined.
    @Test func accessLogFormatShapes() throws {
        #expect(load(minimal()).config?.logging.accessLogFormat == .json)
        #expect(load(minimal(extra: #""logging": { "access_log_format": "combined" },"#)).config?.logging.accessLogFormat == .combined)
        let bad = load(minimal(extra: #""logging": { "access_log_format": "common" },"#)).errors.map(\.description)
        #expect(bad.count == 1 && bad[0].hasPrefix("logging.access_log_format: "), "\(bad)")
    }

    // adaptive_concurrency: true (Envoy's defaults), false (off) or the controller's settings, each in range.
    @Test func adaptiveConcurrencyShapes() throws {
        let route = { (value: String) in #"{ "name": "r", "upstream": "u", "adaptive_concurrency": \#(value) }"# }
        let defaults = try #require(load(minimal(route: route("true"))).config?.routes.first?.adaptiveConcurrency)
        #expect(defaults == AdaptiveConcurrency.Settings())
        #expect(defaults.minLimit == 3 && defaults.maxLimit == 1000 && defaults.minRTTRequests == 50 && defaults.updateIntervalNanos == 100_000_000)
        let off = load(minimal(route: route("false")))
        #expect(off.errors.isEmpty && off.config?.routes.first?.adaptiveConcurrency == nil)
        let custom = try #require(
            load(minimal(route: route(#"{ "min_limit": 5, "max_limit": 200, "update_interval_ms": 250, "min_rtt_interval_ms": 30000, "percentile": 90 }"#)))
                .config?.routes.first?.adaptiveConcurrency)
        #expect(custom.minLimit == 5 && custom.maxLimit == 200 && custom.updateIntervalNanos == 250_000_000)
        #expect(custom.minRTTIntervalNanos == 30_000_000_000 && custom.percentile == 90 && custom.bufferPercent == 25)
        let bad = load(minimal(route: route(#"{ "min_limit": 10, "max_limit": 5, "update_interval_ms": 1, "percentile": 0, "samples": 3 }"#)))
        #expect(
            bad.errors.map(\.description) == [
                "routes[0].adaptive_concurrency.update_interval_ms: 1 is out of range (10...60000)",
                "routes[0].adaptive_concurrency.percentile: 0.0 is out of range (1.0...100.0)",
                "routes[0].adaptive_concurrency.max_limit: must be at least min_limit (10)",
                #"routes[0].adaptive_concurrency.samples: unknown key; known keys here: "buffer_percent", "jitter_percent", "max_limit", "min_limit", "min_rtt_interval_ms", "min_rtt_requests", "percentile", "update_interval_ms""#,
            ], "\(bad.errors)")
    }

    // auth.oidc: the provider's endpoints, the client's credentials and a cookie secret long enough to derive keys
    // from, every mistake at its path; "oidc" on a route needs it; both secrets are hidden from the admin API.
    @Test func oidcShapes() throws {
        let fields = #""issuer": "https://id.example.com/", "authorization_url": "https://id.example.com/authorize", "upstream": "u", "token_path": "/token", "jwks_url": "https://id.example.com/jwks", "client_id": "gw", "client_secret": "s3cret""#
        let secret = String(repeating: "k", count: 32)
        let route = #"{ "name": "r", "upstream": "u", "auth": { "require": ["oidc"], "claims": { "groups": "staff" } } }"#
        let good = load(minimal(route: route, extra: #""auth": { "oidc": { \#(fields), "cookie_secret": "\#(secret)" } },"#))
        #expect(good.errors.isEmpty, "\(good.errors)")
        #expect(
            good.warnings.map(\.description) == [
                #"warning: routes[0].auth.require: "oidc" sends session cookies in clear text on plaintext listener "l" (limit the route to TLS listeners with match.listeners)"#
            ])
        let oidc = try #require(good.config?.auth?.oidc)
        #expect(oidc.scopes == ["openid"] && oidc.redirectPath == "/oauth2/callback" && oidc.logoutPath == "/oauth2/logout" && oidc.logoutRedirect == "/")
        #expect(oidc.cookieName == "gateway_session" && oidc.sessionSeconds == 28_800 && oidc.timeoutMs == 5_000 && oidc.tokenPath == "/token")
        let shown = try #require(good.config?.source).redactingSecrets().rendered
        #expect(!shown.contains("s3cret") && !shown.contains(secret))

        let bad = load(
            minimal(
                extra: #""auth": { "oidc": { "issuer": "https://id.example.com/", "authorization_url": "id.example.com/authorize", "upstream": "nope", "token_path": "token", "jwks_url": "https://id.example.com/jwks", "client_id": "gw", "client_secret": "s", "cookie_secret": "short", "scopes": ["email"], "redirect_path": "/cb", "logout_path": "/cb", "logout_redirect": "//evil.example", "session_seconds": 5 } },"#
            )).errors.map(\.description)
        #expect(
            bad == [
                "auth.oidc.authorization_url: expected an http:// or https:// URL",
                #"auth.oidc.token_path: "token" must be a path starting with "/" (no query, fragment or spaces)"#,
                "auth.oidc.cookie_secret: needs at least 32 bytes (it has 5); make one with `openssl rand -base64 32`",
                #"auth.oidc.scopes: must include "openid" (without it the provider sends no ID token)"#,
                "auth.oidc.logout_redirect: expected an http:// or https:// URL",
                "auth.oidc.session_seconds: 5 is out of range (60...31536000)",
                "auth.oidc.logout_path: must differ from redirect_path",
            ], "\(bad)")
        let idle = load(minimal(route: route, extra: #""auth": { "oidc": { \#(fields), "cookie_secret": "\#(secret)", "session_seconds": 3600, "idle_seconds": 3600 } },"#))
        #expect(idle.errors.map(\.description) == ["auth.oidc.idle_seconds: must be shorter than session_seconds (3600), which ends every session anyway"])
        let idleOK = load(minimal(route: route, extra: #""auth": { "oidc": { \#(fields), "cookie_secret": "\#(secret)", "idle_seconds": 1800 } },"#))
        #expect(idleOK.config?.auth?.oidc?.idleSeconds == 1800 && oidc.idleSeconds == nil)
        let domains = load(minimal(route: route, extra: #""auth": { "oidc": { \#(fields), "cookie_secret": "\#(secret)", "email_domains": ["Example.COM", "a@b.c"] } },"#))
        #expect(domains.errors.map(\.description) == [#"auth.oidc.email_domains[1]: "a@b.c": a domain name (example.com), not an address"#])
        let lowered = load(minimal(route: route, extra: #""auth": { "oidc": { \#(fields), "cookie_secret": "\#(secret)", "email_domains": ["Example.COM"] } },"#))
        #expect(lowered.config?.auth?.oidc?.emailDomains == ["example.com"])
        let unknown = load(minimal(extra: #""auth": { "oidc": { \#(fields.replacingOccurrences(of: #""u""#, with: #""idp""#)), "cookie_secret": "\#(secret)" } },"#))
        #expect(unknown.errors.map(\.description) == [#"auth.oidc.upstream: unknown upstream "idp""#])
        let missing = load(minimal(route: route)).errors.map(\.description)
        #expect(missing == [#"routes[0].auth.require: "oidc" needs auth.oidc to be configured"#])

        // The callback and logout paths must reach a route that takes sessions.
        let underApp = #"{ "name": "r", "upstream": "u", "match": { "path_prefix": "/app" }, "auth": { "require": ["oidc"] } }"#
        let stranded = load(minimal(route: underApp, extra: #""auth": { "oidc": { \#(fields), "cookie_secret": "\#(secret)", "logout_path": "/app/logout" } },"#))
        let strandedWarnings = stranded.warnings.map(\.description).filter { $0.contains("auth.oidc") }
        #expect(
            strandedWarnings == [
                #"warning: auth.oidc.redirect_path: /oauth2/callback is under no route that requires "oidc": put it under one (the login cannot finish otherwise)"#
            ])
    }

    // sticky_cookie: a cookie name (a token), an optional lifetime, Secure on demand.
    @Test func stickyCookieShapes() throws {
        let config = { (sticky: String) in
            #"{ "listeners": [{ "name": "l", "port": 1 }], "upstreams": { "u": { "targets": ["http://10.0.0.1:80", "http://10.0.0.2:80"], "sticky_cookie": \#(sticky) } }, "routes": [{ "name": "r", "upstream": "u" }] }"#
        }
        let full = try #require(load(config(#"{ "name": "gw_sticky", "max_age_seconds": 3600, "secure": true }"#)).config?.upstreams.first?.stickyCookie)
        #expect(full.name == "gw_sticky" && full.maxAgeSeconds == 3600 && full.secure)
        let session = try #require(load(config(#"{ "name": "s" }"#)).config?.upstreams.first?.stickyCookie)
        #expect(session.maxAgeSeconds == nil && !session.secure)
        let bad = load(config(#"{ "name": "a b", "max_age_seconds": 0 }"#)).errors.map(\.description)
        #expect(bad == [
            #"upstreams.u.sticky_cookie.name: "a b" is not a valid token (letters, digits and !#$%&'*+-.^_`|~)"#,
            "upstreams.u.sticky_cookie.max_age_seconds: 0 is out of range (1...315360000)",
        ])
    }

    // request_id: a header of the operator's choosing (not one with a meaning of its own), and whose ids are kept.
    @Test func requestIDShapes() throws {
        let defaults = try #require(load(minimal()).config?.requestID)
        #expect(defaults.header == "x-request-id" && defaults.preserveIncoming == .always)
        let custom = try #require(load(minimal(extra: #""request_id": { "header": "X-Correlation-ID", "preserve_incoming": "trusted_proxies" },"#)).config?.requestID)
        #expect(custom.header == "x-correlation-id" && custom.preserveIncoming == .trustedProxies)
        let bad = load(minimal(extra: #""request_id": { "header": "Traceparent", "preserve_incoming": "sometimes" },"#)).errors.map(\.description)
        #expect(bad.count == 2, "\(bad)")
        #expect(bad.first == "request_id.header: traceparent has a meaning of its own and cannot carry the request id")
    }

    // The files a reload reads again, each once: what reload.watch polls besides gateway.json.
    @Test func reloadedFiles() throws {
        let json = #"""
            { "listeners": [{ "name": "l", "port": 1, "tls": { "certificates": [{ "cert": "/c/a.pem", "key": "/c/a-key.pem" }, { "cert": "/c/b.pem", "key": "/c/b-key.pem" }], "client_ca": "/c/ca.pem" } }],
              "upstreams": { "u": { "targets": ["https://10.0.0.1:443"], "tls": { "ca_file": "/c/ca.pem", "client_cert": "/c/client.pem", "client_key": "/c/client-key.pem" } } },
              "auth": { "jwt": { "keys": [{ "alg": "RS256", "public_key_file": "/k/rsa.pem" }], "jwks_file": "/k/jwks.json" }, "api_keys_file": "/k/keys.json" },
              "routes": [{ "name": "r", "upstream": "u" }] }
            """#
        let config = try #require(load(json).config)
        #expect(config.reloadedFiles == [
            "/c/a.pem", "/c/a-key.pem", "/c/b.pem", "/c/b-key.pem", "/c/ca.pem", "/c/client.pem", "/c/client-key.pem",
            "/k/keys.json", "/k/jwks.json", "/k/rsa.pem",
        ])
        #expect(try #require(load(minimal()).config).reloadedFiles.isEmpty)
    }

    // csrf: true, false or an object; trusted origins are origins ("*" would trust every site).
    @Test func csrfShapes() throws {
        let on = try #require(load(minimal(route: #"{ "name": "r", "upstream": "u", "csrf": true }"#)).config?.routes.first)
        #expect(on.csrf == CSRFConfig())
        let off = try #require(load(minimal(route: #"{ "name": "r", "upstream": "u", "csrf": false }"#)).config?.routes.first)
        #expect(off.csrf?.enabled == false && off.effectiveCSRF(global: nil) == nil)
        let full = try #require(load(minimal(route: #"{ "name": "r", "upstream": "u", "csrf": { "trusted_origins": ["https://app.example.com"], "report_only": true } }"#)).config?.routes.first)
        #expect(full.csrf?.trustedOrigins == ["https://app.example.com"] && full.csrf?.reportOnly == true)
        let bad = load(minimal(route: #"{ "name": "r", "upstream": "u", "csrf": { "trusted_origins": ["*", "https://a.test/"] } }"#)).errors.map(\.description)
        let atTheirPaths = bad.filter { $0.hasPrefix("routes[0].csrf.trusted_origins[") }
        #expect(bad.count == 2 && atTheirPaths.count == 2, "\(bad)")
        let shape = load(minimal(route: #"{ "name": "r", "upstream": "u", "csrf": "yes" }"#)).errors.map(\.description)
        #expect(shape == ["routes[0].csrf: expected true, false or an object"])
    }

    // Which routes get csrf: their own setting, else the top level's, else on where browsers send the credentials
    // by themselves (sessions, Basic passwords, client certificates), off elsewhere.
    @Test func csrfDefaults() throws {
        let route = { (auth: String, csrf: String) in #"{ "name": "r", "upstream": "u" \#(auth) \#(csrf) }"#}
        let effective = { (top: String, auth: String, csrf: String) throws -> CSRFConfig? in
            let config = try #require(
                self.load(self.minimal(route: route(auth, csrf), extra: top + #""auth": { "basic": { "users": [{ "username": "a", "password_hash": "$2y$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e" }] }, "api_keys": [{ "id": "k", "sha256": "\#(String(repeating: "0", count: 64))" }] },"#))
                    .config)
            return config.routes[0].effectiveCSRF(global: config.csrf)
        }
        #expect(try effective("", "", "") == nil)
        #expect(try effective("", #", "auth": { "require": ["api_key"] }"#, "") == nil, "a header credential cannot be sent by another site's page")
        #expect(try effective("", #", "auth": { "require": ["api_key", "basic"] }"#, "") == CSRFConfig())
        #expect(try effective("", #", "auth": { "require": ["basic"] }"#, #", "csrf": false"#) == nil)
        #expect(try effective(#""csrf": { "report_only": true },"#, "", "")?.reportOnly == true)
        #expect(try effective(#""csrf": false,"#, #", "auth": { "require": ["basic"] }"#, "") == nil)
        #expect(try effective(#""csrf": false,"#, "", #", "csrf": true"#) == CSRFConfig())
    }

    // forwarded_header: off unless asked for; anything but a boolean is reported at its path.
    @Test func forwardedHeaderShapes() throws {
        #expect(try #require(load(minimal()).config).forwardedHeader == false)
        #expect(try #require(load(minimal(extra: #""forwarded_header": true,"#)).config).forwardedHeader)
        let bad = load(minimal(extra: #""forwarded_header": "yes","#)).errors.map(\.description)
        #expect(bad == ["forwarded_header: expected true or false, found a string"], "\(bad)")
    }

    // fault: a delay and/or an abort, percentages 0-100 (100 when left out); a warning says it touches live traffic.
    @Test func faultShapes() throws {
        let good = load(minimal(route: #"{ "name": "r", "upstream": "u", "fault": { "delay": { "ms": 200, "percent": 12.5 }, "abort": { "status": 503 } } }"#))
        #expect(good.errors.isEmpty)
        #expect(good.config?.routes.first?.fault == FaultConfig(delay: .init(ms: 200, percent: 12.5), abort: .init(status: 503, percent: 100)))
        #expect(good.warnings.map(\.description) == ["warning: routes[0].fault: injects delays or errors into this route's live traffic"])
        let bad = load(minimal(route: #"{ "name": "r", "upstream": "u", "fault": { "abort": { "status": 200, "percent": 101 } } }"#)).errors.map(\.description)
        #expect(bad == ["routes[0].fault.abort.status: 200 is out of range (400...599)", "routes[0].fault.abort.percent: 101.0 is out of range (0.0...100.0)"])
        let empty = load(minimal(route: #"{ "name": "r", "upstream": "u", "fault": {} }"#)).errors.map(\.description)
        #expect(empty == ["routes[0].fault: give a delay, an abort, or both"])
    }

    // match.listeners: names of listeners that exist; two routes alike but for their listeners do not shadow each other.
    @Test func listenerConditionShapes() throws {
        let config = { (routes: String) in
            #"{ "listeners": [{ "name": "public", "port": 1 }, { "name": "internal", "port": 2 }], "upstreams": { "u": { "targets": ["http://10.0.0.1:80"] } }, "routes": \#(routes) }"#
        }
        let split = load(config(#"[{ "name": "a", "match": { "path": "/x", "listeners": ["internal"] }, "upstream": "u" }, { "name": "b", "match": { "path": "/x", "listeners": ["public"] }, "upstream": "u" }]"#))
        #expect(split.errors.isEmpty && split.warnings.isEmpty, "\(split.diagnostics)")
        #expect(split.config?.routes.first?.match.listeners == ["internal"])
        let typo = load(config(#"[{ "name": "a", "match": { "listeners": ["internl", "elsewhere"] }, "upstream": "u" }]"#)).errors.map(\.description)
        #expect(typo == [
            #"routes[0].match.listeners[0]: unknown listener "internl" (did you mean "internal"?)"#,
            #"routes[0].match.listeners[1]: unknown listener "elsewhere""#,
        ])
    }

    // host_rewrite: host or host:port (names, IPv4, bracketed IPv6), not together with preserve_host.
    @Test func hostRewriteShapes() {
        let rewrite = { (value: String, extra: String) in
            load(self.minimal(route: #"{ "name": "r", "upstream": "u", "host_rewrite": "\#(value)" \#(extra) }"#))
        }
        for good in ["api.internal", "api.internal:8443", "10.0.0.5:80", "[fd00::5]:8080", "[fd00::5]"] {
            #expect(rewrite(good, "").errors.isEmpty, "\(good)")
        }
        #expect(rewrite("API.Internal", "").config?.routes.first?.hostRewrite == "api.internal")
        for bad in ["api.internal:0", "api internal", "user@api", "api/x", "fd00::5", "*.example.com", ""] {
            #expect(rewrite(bad, "").errors.count == 1, "\(bad)")
        }
        #expect(rewrite("api.internal", #", "preserve_host": false"#).errors.map(\.description) == [
            "routes[0].host_rewrite: host_rewrite decides the upstream's Host; drop preserve_host"
        ])
    }

    // request_query: names to remove, parameters to set (string values), nothing else.
    @Test func requestQueryShapes() throws {
        let good = try #require(load(minimal(route: #"{ "name": "r", "upstream": "u", "request_query": { "remove": ["utm_source"], "set": { "key": "partner-key" } } }"#)).config?.routes.first?.requestQuery)
        #expect(good.remove == ["utm_source"] && good.set.map(\.name) == ["key"])
        let bad = load(minimal(route: #"{ "name": "r", "upstream": "u", "request_query": { "remove": [""], "set": { "n": 1 }, "add": {} } }"#)).errors
        #expect(bad.count == 3, "\(bad)")
    }

    // match.headers: an exact string, or one of prefix/suffix/contains/present; anything else is an error.
    @Test func headerRuleShapes() throws {
        let route = #"{ "name": "r", "upstream": "u", "match": { "headers": { "X-A": "1", "User-Agent": { "contains": "bot" }, "x-v": { "prefix": "2." }, "x-debug": { "present": false } } } }"#
        let rules = try #require(load(minimal(route: route)).config?.routes.first?.match.headers)
        let described = rules.map { "\($0.name)\($0.rule)" }
        #expect(described == ["x-a=1", "user-agent~bot", "x-v^2.", "x-debug!"])
        let bad = load(minimal(route: #"{ "name": "r", "upstream": "u", "match": { "headers": { "x-a": { "prefix": "a", "suffix": "b" }, "x-b": {}, "x-c": { "regex": ".*" }, "x-d": 3 } } }"#)).errors.map(\.description)
        #expect(bad.count == 5, "\(bad)")
        #expect(bad.contains("routes[0].match.headers.x-a: give one of prefix, suffix, contains or present (or a string for the exact value)"))
    }

    // auth.claims: a value or a list of accepted values per claim, on routes that take tokens.
    @Test func routeClaimShapes() throws {
        let jwt = #""auth": { "jwt": { "keys": [{ "alg": "HS256", "secret": "0123456789abcdef0123456789abcdef" }] }, "api_keys": [{ "id": "k", "sha256": "\#(String(repeating: "a", count: 64))" }] },"#
        let good = load(minimal(route: #"{ "name": "r", "upstream": "u", "auth": { "require": ["jwt"], "claims": { "tenant": "acme", "roles": ["admin", "ops"] } } }"#, extra: jwt))
        let claims = try #require(good.config?.routes.first?.auth?.claims)
        let described = claims.map { "\($0.name)=\($0.values.joined(separator: "|"))" }
        #expect(described == ["tenant=acme", "roles=admin|ops"])
        #expect(good.config?.routeClaimNames == ["tenant", "roles"])
        let keyed = load(minimal(route: #"{ "name": "r", "upstream": "u", "auth": { "require": ["jwt"] }, "rate_limits": [{ "name": "t", "algorithm": "sliding_window", "key": "claim:plan", "limit": 5, "window_seconds": 60 }], "concurrency_limit": { "key": "claim:tenant", "max": 3 } }"#, extra: jwt))
        #expect(keyed.errors.isEmpty && keyed.warnings.isEmpty, "\(keyed.diagnostics)")
        #expect(keyed.config?.routeClaimNames == ["plan", "tenant"])
        #expect(keyed.config?.routes.first?.rateLimits.first?.key == .claim("plan"))
        let anonymous = load(minimal(route: #"{ "name": "r", "upstream": "u", "rate_limits": [{ "name": "t", "algorithm": "sliding_window", "key": "claim:plan", "limit": 5, "window_seconds": 60 }] }"#, extra: jwt))
        #expect(anonymous.warnings.map(\.description) == [#"warning: routes[0].auth: a "claim:" key on a route that takes no tokens (jwt, introspection, oidc) counts per client ip"#])
        let keysOnly = load(minimal(route: #"{ "name": "r", "upstream": "u", "auth": { "require": ["api_key"], "claims": { "tenant": "acme" } } }"#, extra: jwt))
        #expect(keysOnly.errors.map(\.description) == [#"routes[0].auth.claims: claims are checked on tokens: require "jwt", "introspection" or "oidc""#])
        let empty = load(minimal(route: #"{ "name": "r", "upstream": "u", "auth": { "require": ["jwt"], "claims": { "roles": [] } } }"#, extra: jwt))
        #expect(empty.errors.map(\.description) == ["routes[0].auth.claims.roles: list at least one accepted value"])
    }

    // rate_limits[].overrides: other numbers (or exempt) for callers named by consumer id and/or claims; each
    // mistake reported at its path.
    @Test func rateLimitOverrideShapes() throws {
        let jwt = #""auth": { "jwt": { "keys": [{ "alg": "HS256", "secret": "0123456789abcdef0123456789abcdef" }] }, "api_keys": [{ "id": "k", "sha256": "\#(String(repeating: "a", count: 64))" }] },"#
        let route = { (auth: String, overrides: String) in
            #"{ "name": "r", "upstream": "u", \#(auth) "rate_limits": [{ "name": "t", "algorithm": "token_bucket", "key": "consumer", "capacity": 10, "refill_per_second": 1, "cost": 2, "overrides": \#(overrides) }] }"#
        }
        let tokens = #""auth": { "require": ["jwt", "api_key"] },"#
        let good = load(minimal(route: route(tokens, #"[{ "consumers": ["k"], "exempt": true }, { "claims": { "plan": ["gold", "platinum"] }, "capacity": 100 }]"#), extra: jwt))
        #expect(good.errors.isEmpty && good.warnings.isEmpty, "\(good.diagnostics)")
        let limit = try #require(good.config?.routes.first?.rateLimits.first)
        #expect(limit.overrides.count == 2 && limit.overrides[0].exempt && limit.overrides[0].callers.consumers == ["k"])
        let gold = limit.overridden(by: limit.overrides[1])
        #expect(gold.capacity == 100 && gold.refillPerSecond == 1 && gold.cost == 2)
        #expect(good.config?.routeClaimNames == ["plan"])
        #expect(limit.overrides[1].callers.include(consumer: "u", claims: ["plan": ["gold"]]))
        #expect(!limit.overrides[1].callers.include(consumer: "u", claims: ["plan": ["free"]]))
        #expect(!limit.overrides[1].callers.include(consumer: nil, claims: ["plan": ["gold"]]), "anonymous requests are nobody's plan")
        #expect(!limit.overrides[0].callers.include(consumer: "other", claims: nil))

        let mistakes = #"""
            [{ "capacity": 5 }, { "consumers": ["k"] }, { "consumers": ["k"], "exempt": true, "capacity": 5 },
             { "consumers": ["k"], "limit": 5 }, { "consumers": [], "claims": {}, "capacity": 5 }, { "consumers": ["k"], "capacity": 1 }]
            """#
        let bad = load(minimal(route: route(tokens, mistakes), extra: jwt)).errors.map(\.description)
        #expect(bad == [
            "routes[0].rate_limits[0].overrides[0]: name the callers it applies to: consumers, claims or both",
            "routes[0].rate_limits[0].overrides[1]: give these callers their numbers (capacity and/or refill_per_second, or limit and/or window_seconds) or exempt: true",
            "routes[0].rate_limits[0].overrides[2].exempt: an exempt override takes no numbers",
            "routes[0].rate_limits[0].overrides[3].limit: belongs to sliding_window and fixed_window; this limit is a token_bucket",
            "routes[0].rate_limits[0].overrides[4].consumers: list at least one consumer id",
            "routes[0].rate_limits[0].overrides[4].claims: name at least one claim",
            "routes[0].rate_limits[0].overrides[5].capacity: is smaller than the limit's cost; no request of these callers could ever pass",
        ])
        let anonymous = load(minimal(route: route("", #"[{ "consumers": ["k"], "capacity": 50 }]"#), extra: jwt)).errors.map(\.description)
        #expect(anonymous == ["routes[0].rate_limits[0].overrides[0]: applies to authenticated callers, and this route has no auth: it would never apply"])
        let keysOnly = load(minimal(route: route(#""auth": { "require": ["api_key"] },"#, #"[{ "claims": { "plan": "gold" }, "capacity": 50 }]"#), extra: jwt))
        #expect(keysOnly.errors.map(\.description) == [#"routes[0].rate_limits[0].overrides[0].claims: claims come from tokens: the route's auth must take "jwt", "introspection" or "oidc""#])
    }

    // fixed_window takes limit and window_seconds like sliding_window; a large sliding window is warned about.
    @Test func fixedWindowShapes() throws {
        let route = { (limit: String) in #"{ "name": "r", "upstream": "u", "rate_limits": [\#(limit)] }"# }
        let daily = load(minimal(route: route(#"{ "name": "daily", "algorithm": "fixed_window", "key": "ip", "limit": 100000, "window_seconds": 86400 }"#)))
        #expect(daily.errors.isEmpty && daily.warnings.isEmpty, "\(daily.diagnostics)")
        let limit = try #require(daily.config?.routes.first?.rateLimits.first)
        #expect(limit.algorithm == .fixedWindow && limit.limit == 100_000 && limit.windowSeconds == 86_400)
        let missing = load(minimal(route: route(#"{ "name": "q", "algorithm": "fixed_window", "key": "ip", "capacity": 5 }"#))).errors.map(\.description)
        #expect(missing == [
            "routes[0].rate_limits[0].limit: fixed_window needs a limit",
            "routes[0].rate_limits[0].window_seconds: fixed_window needs window_seconds",
            "routes[0].rate_limits[0]: capacity and refill_per_second belong to token_bucket",
        ])
        let large = load(minimal(route: route(#"{ "name": "s", "algorithm": "sliding_window", "key": "ip", "limit": 100000, "window_seconds": 86400 }"#)))
        #expect(large.warnings.map(\.description) == [
            "warning: routes[0].rate_limits[0].limit: a sliding window keeps the time of every counted request (up to 100000 per key in memory or Redis); for a quota this large, fixed_window keeps one counter"
        ])
    }

    // logging.file / access_log_file / buffer_bytes: optional, bounded, not the same file twice.
    @Test func logOutputShapes() throws {
        let unset = try #require(load(minimal()).config?.logging)
        #expect(unset.file == nil && unset.accessLogFile == nil && unset.bufferBytes == 8 << 20)
        let set = try #require(load(minimal(extra: #""logging": { "file": "/var/log/gateway/gateway.log", "access_log_file": "/var/log/gateway/access.log", "buffer_bytes": 1048576 },"#)).config?.logging)
        #expect(set.file == "/var/log/gateway/gateway.log" && set.accessLogFile == "/var/log/gateway/access.log" && set.bufferBytes == 1 << 20)
        let bad = load(minimal(extra: #""logging": { "file": "/tmp/a.log", "access_log_file": "/tmp/a.log", "buffer_bytes": 10 },"#)).errors.map(\.description)
        #expect(bad.count == 2, "\(bad)")
        #expect(bad.contains("logging.access_log_file: is the same file as logging.file; leave it out to log everything there"))
    }

    // logging.syslog: a host and port (514 by default) or the local daemon's socket, each with its defaults; every
    // mistake at its path, and syslog never beside the file it would replace.
    @Test func syslogShapes() throws {
        func syslog(_ body: String) -> (SyslogConfig?, [String]) {
            let result = load(minimal(extra: #""logging": \#(body),"#))
            return (result.config?.logging.syslog, result.errors.map(\.description))
        }
        let network = try #require(syslog(#"{ "syslog": { "address": "logs.example.net" } }"#).0)
        #expect(network.address == .network(host: "logs.example.net", port: 514) && network.transport == .udp)
        #expect(network.format == .rfc5424 && network.facility == 23 && network.tag == "gateway" && network.lines == .all)
        let tcp = try #require(
            syslog(#"{ "syslog": { "address": "[fd00::9]:6514", "transport": "tcp", "facility": "local0", "tag": "edge-1", "format": "rfc3164", "lines": "access" } }"#).0)
        #expect(tcp.address == .network(host: "fd00::9", port: 6514) && "\(tcp.address)" == "[fd00::9]:6514")
        #expect(tcp.transport == .tcp && tcp.facility == 16 && tcp.tag == "edge-1" && tcp.format == .rfc3164 && tcp.lines == .access)
        let local = try #require(syslog(#"{ "syslog": { "address": "unix:/dev/log" } }"#).0)
        #expect(local.address == .unix(path: "/dev/log") && local.format == .rfc3164)
        // Beside a file for the other lines, only the access lines.
        let split = syslog(#"{ "file": "/var/log/gateway.log", "syslog": { "address": "127.0.0.1:514", "lines": "access" } }"#)
        #expect(split.0?.lines == .access && split.1.isEmpty, "\(split.1)")

        let bad = syslog(#"{ "syslog": { "address": "127.0.0.1:99999", "transport": "quic", "facility": "local9", "tag": "a b" } }"#).1
        #expect(bad.count == 4, "\(bad)")
        #expect(bad.contains("logging.syslog.address: expected HOST:PORT (an address or a name; the port defaults to 514), or unix:/dev/log"))
        let facilityError = bad.contains { $0.hasPrefix("logging.syslog.facility: ") }
        #expect(facilityError)
        #expect(bad.contains("logging.syslog.tag: expected 1-32 letters, digits, '-', '_' or '.' (RFC 3164's TAG)"))
        let relative = syslog(#"{ "syslog": { "address": "unix:dev/log", "transport": "tcp" } }"#).1
        #expect(relative == ["logging.syslog.address: expected an absolute socket path after unix:, such as unix:/dev/log"])
        let streamToLocal = syslog(#"{ "syslog": { "address": "unix:/dev/log", "transport": "tcp" } }"#).1
        #expect(streamToLocal == ["logging.syslog.transport: a unix: address is the local daemon's datagram socket; tcp is for a host and port"])
        let twice = syslog(#"{ "file": "/var/log/gateway.log", "syslog": { "address": "127.0.0.1" } }"#).1
        #expect(twice == [#"logging.syslog: takes every line, and logging.file too: leave out file, or send syslog only the access lines ("lines": "access")"#])
        let accessTwice = syslog(#"{ "access_log_file": "/var/log/access.log", "syslog": { "address": "127.0.0.1", "lines": "access" } }"#).1
        #expect(accessTwice == ["logging.syslog.lines: access lines go to logging.access_log_file already: leave out one of them"])
        let noAddress = syslog(#"{ "syslog": {} }"#).1.contains { $0.hasPrefix("logging.syslog.address: ") }
        #expect(noAddress)
    }

    // targets[].backup: decoded; an upstream of backups only is an error, backups nothing can hand over from warned.
    @Test func backupTargetShapes() throws {
        let config = { (upstream: String) in
            #"{ "listeners": [{ "name": "l", "port": 1 }], "upstreams": { "u": \#(upstream) }, "routes": [{ "name": "r", "upstream": "u" }] }"#
        }
        let good = load(config(#"{ "targets": ["http://10.0.0.1:80", { "url": "http://10.0.0.2:80", "backup": true }], "health_check": { "path": "/h" } }"#))
        #expect(good.errors.isEmpty && good.warnings.isEmpty, "\(good.diagnostics)")
        #expect(good.config?.upstreams.first?.targets.map(\.backup) == [false, true])
        let onlyBackups = load(config(#"{ "targets": [{ "url": "http://10.0.0.2:80", "backup": true }], "retries": { "attempts": 1 } }"#))
        #expect(onlyBackups.errors.map(\.description) == ["upstreams.u.targets: every target is a backup: at least one must take requests normally"])
        let unwatched = load(config(#"{ "targets": ["http://10.0.0.1:80", { "url": "http://10.0.0.2:80", "backup": true }] }"#))
        #expect(unwatched.errors.isEmpty && unwatched.warnings.count == 1)
        #expect(unwatched.warnings.first?.description.hasPrefix("warning: upstreams.u.targets: backup targets take over") == true)
    }

    // api_keys: one consumer may hold several keys (rotation), one key may not be listed twice; expires_at is
    // an RFC 3339 time (a past one is warned about).
    @Test func apiKeyRotationShapes() throws {
        let digest = { (c: String) in String(repeating: c, count: 64) }
        let keys = { (entries: String) in minimal(extra: #""auth": { "api_keys": \#(entries) },"#) }
        let rotation = load(keys(#"[{ "id": "billing", "sha256": "\#(digest("a"))", "expires_at": "2999-01-31T00:00:00Z" }, { "id": "billing", "sha256": "\#(digest("b"))" }]"#))
        #expect(rotation.errors.isEmpty && rotation.warnings.isEmpty, "\(rotation.diagnostics)")
        let parsed = try #require(rotation.config?.auth?.apiKeys)
        #expect(parsed.map(\.id) == ["billing", "billing"])
        #expect(parsed[0].expiresAt == RFC3339.seconds("2999-01-31T00:00:00Z") && parsed[1].expiresAt == nil)
        let twice = load(keys(#"[{ "id": "one", "sha256": "\#(digest("a"))" }, { "id": "two", "sha256": "\#(digest("A"))" }]"#))
        #expect(twice.errors.map(\.description) == [#"auth.api_keys[1].sha256: the same key is already listed (for "one")"#])
        let past = load(keys(#"[{ "id": "old", "sha256": "\#(digest("a"))", "expires_at": "2020-01-01" }]"#))
        #expect(past.errors.isEmpty && past.warnings.map(\.description) == ["warning: auth.api_keys[0].expires_at: 2020-01-01 has passed: this key is refused"])
        let bad = load(keys(#"[{ "id": "x", "sha256": "\#(digest("a"))", "expires_at": "next tuesday" }]"#)).errors.map(\.description)
        #expect(bad == [#"auth.api_keys[0].expires_at: expected an RFC 3339 time such as "2027-01-31T00:00:00Z" (or a date, "2027-01-31", meaning its midnight UTC)"#])
    }

    // retries.replay_body_bytes (64 KiB unless given, 0-16 MiB) and idempotency_key (off unless given).
    @Test func retryReplayShapes() throws {
        let config = { (retries: String) in
            #"{ "listeners": [{ "name": "l", "port": 1 }], "upstreams": { "u": { "targets": ["http://10.0.0.1:80"], "retries": \#(retries) } }, "routes": [{ "name": "r", "upstream": "u" }] }"#
        }
        let defaults = try #require(load(config("{}")).config?.upstreams.first?.retries)
        #expect(defaults.replayBodyBytes == 65_536 && !defaults.idempotencyKey)
        let set = try #require(load(config(#"{ "replay_body_bytes": 0, "idempotency_key": true }"#)).config?.upstreams.first?.retries)
        #expect(set.replayBodyBytes == 0 && set.idempotencyKey)
        #expect(load(config(#"{ "replay_body_bytes": 100000000 }"#)).errors.count == 1)
    }

    // auth.upstream_token: an issuer, an algorithm and its key; a header the gateway can keep clients from forging.
    @Test func upstreamTokenShapes() throws {
        let auth = { (token: String) in minimal(extra: #""auth": { "api_keys": [], "upstream_token": \#(token) },"#) }
        let good = load(auth(#"{ "issuer": "https://gw", "alg": "ES256", "private_key_file": "/etc/gateway/signing.pem", "ttl_seconds": 120 }"#))
        #expect(good.errors.isEmpty, "\(good.diagnostics)")
        let token = try #require(good.config?.auth?.upstreamToken)
        #expect(token.header == "x-auth-token" && token.ttlSeconds == 120 && token.privateKeyFile == "/etc/gateway/signing.pem")
        let bad = load(auth(#"{ "issuer": "https://gw", "alg": "HS256", "secret": "short", "header": "X-Identity" }"#)).errors.map(\.description)
        #expect(bad == [
            #"auth.upstream_token.header: use "authorization" or an X-Auth-* name (the gateway removes client-sent X-Auth-* fields, so no client can forge it)"#,
            "auth.upstream_token.secret: needs at least 32 bytes (it has 5)",
        ])
        let keyless = load(auth(#"{ "issuer": "https://gw", "alg": "RS256", "secret": "0123456789abcdef0123456789abcdef" }"#)).errors.map(\.description)
        #expect(keyless == ["auth.upstream_token.private_key_file: RS256 signs with a private key (a PEM file)", "auth.upstream_token.secret: RS256 signs with private_key_file, not a secret"])
    }

    // direct_response: status, body, content_type and headers; one way of answering per route.
    @Test func directResponseShapes() throws {
        let route = { (answer: String) in minimal(route: #"{ "name": "r", \#(answer) }"#) }
        let good = load(route(#""direct_response": { "body": "ok", "headers": { "Cache-Control": "no-store" } }"#))
        #expect(good.errors.isEmpty, "\(good.diagnostics)")
        #expect(good.config?.routes.first?.answer == .content(status: 200, contentType: "text/plain; charset=utf-8", body: "ok", headers: [("cache-control", "no-store")]))
        let bad = load(route(#""direct_response": { "status": 204, "body": "x", "headers": { "Content-Length": "1" } }, "respond": { "status": 410, "code": "GONE", "message": "gone" }"#)).errors.map(\.description)
        #expect(bad.count == 3, "\(bad)")
        #expect(bad.contains("routes[0].direct_response.body: a 204 answer has no body"))
        #expect(bad.contains("routes[0].direct_response: a route answers itself in one way: respond, direct_response are given"))

        // The upstream-token key set: only with a public key to publish, and as the whole answer.
        let hmac = #""auth": { "api_keys": [], "upstream_token": { "issuer": "gw", "alg": "HS256", "secret": "0123456789abcdef0123456789abcdef" } },"#
        let secretOnly = load(minimal(route: #"{ "name": "r", "direct_response": { "jwks": "upstream_token", "body": "x" } }"#, extra: hmac)).errors.map(\.description)
        #expect(secretOnly == [
            "routes[0].direct_response.body: the key set is the whole answer: leave body out",
            "routes[0].direct_response.jwks: needs auth.upstream_token with ES256 or RS256 (an HS256 secret has no public key to publish)",
        ])
    }

    // concurrency_limit.overrides: another max (or exempt) for named callers.
    @Test func concurrencyOverrideShapes() throws {
        let jwt = #""auth": { "jwt": { "keys": [{ "alg": "HS256", "secret": "0123456789abcdef0123456789abcdef" }] } },"#
        let route = { (overrides: String) in
            #"{ "name": "r", "upstream": "u", "auth": { "require": ["jwt"] }, "concurrency_limit": { "key": "consumer", "max": 2, "overrides": \#(overrides) } }"#
        }
        let good = load(minimal(route: route(#"[{ "consumers": ["batch"], "exempt": true }, { "claims": { "plan": "gold" }, "max": 20 }]"#), extra: jwt))
        #expect(good.errors.isEmpty, "\(good.diagnostics)")
        let limit = try #require(good.config?.routes.first?.concurrencyLimit)
        let maxima = [limit.max(consumer: "batch", claims: nil), limit.max(consumer: "u", claims: ["plan": ["gold"]]), limit.max(consumer: "u", claims: nil)]
        #expect(maxima == [nil, 20, 2])
        #expect(good.config?.routeClaimNames == ["plan"])
        let bad = load(minimal(route: route(#"[{ "consumers": ["x"] }, { "max": 3 }]"#), extra: jwt)).errors.map(\.description)
        #expect(bad == [
            "routes[0].concurrency_limit.overrides[0]: give these callers their max, or exempt: true",
            "routes[0].concurrency_limit.overrides[1]: name the callers it applies to: consumers, claims or both",
        ])
    }

    // health_check.grpc_service: the gRPC health protocol, for h2 targets only, with no path of its own.
    @Test func grpcHealthCheckShapes() throws {
        let config = { (upstream: String) in
            #"{ "listeners": [{ "name": "l", "port": 1 }], "upstreams": { "u": \#(upstream) }, "routes": [{ "name": "r", "upstream": "u" }] }"#
        }
        let good = load(config(#"{ "targets": ["http://10.0.0.1:50051"], "protocol": "h2", "health_check": { "grpc_service": "" } }"#))
        #expect(good.errors.isEmpty, "\(good.diagnostics)")
        #expect(good.config?.upstreams.first?.healthCheck?.grpcService == "")
        let bad = load(config(#"{ "targets": ["http://10.0.0.1:8080"], "health_check": { "grpc_service": "x", "path": "/h" } }"#)).errors.map(\.description)
        #expect(bad == [
            "upstreams.u.health_check.path: a gRPC health check asks grpc.health.v1.Health/Check; leave path out",
            #"upstreams.u.health_check.grpc_service: gRPC health checks speak HTTP/2: target 10.0.0.1:8080 is not "protocol": "h2""#,
        ])
    }

    // pool: connection lifetime limits, off unless given.
    @Test func poolLifetimeShapes() throws {
        let config = { (pool: String) in
            #"{ "listeners": [{ "name": "l", "port": 1 }], "upstreams": { "u": { "targets": ["http://10.0.0.1:80"], "pool": \#(pool) } }, "routes": [{ "name": "r", "upstream": "u" }] }"#
        }
        let set = try #require(load(config(#"{ "max_requests_per_connection": 1000, "max_connection_age_ms": 60000 }"#)).config?.upstreams.first?.pool)
        #expect(set.maxRequestsPerConnection == 1000 && set.maxConnectionAgeMs == 60000)
        let unset = try #require(load(config("{}")).config?.upstreams.first?.pool)
        #expect(unset.maxRequestsPerConnection == nil && unset.maxConnectionAgeMs == nil)
        #expect(load(config(#"{ "max_requests_per_connection": 0 }"#)).errors.count == 1)
    }

    // health_check: expected statuses as codes or classes, a Host, extra fields.
    @Test func healthCheckShapes() throws {
        let config = { (check: String) in
            #"{ "listeners": [{ "name": "l", "port": 1 }], "upstreams": { "u": { "targets": ["http://10.0.0.1:80"], "health_check": \#(check) } }, "routes": [{ "name": "r", "upstream": "u" }] }"#
        }
        let check = try #require(load(config(#"{ "path": "/h", "expected_statuses": ["2xx", 401], "host": "svc.internal", "headers": { "X-Probe": "1" } }"#)).config?.upstreams.first?.healthCheck)
        #expect(check.expectedStatuses == [2, 401])
        #expect(check.passes(204) && check.passes(401) && !check.passes(302) && !check.passes(500))
        #expect(check.host == "svc.internal")
        #expect(check.headers.map(\.name) == ["x-probe"])
        let defaults = try #require(load(config(#"{ "path": "/h" }"#)).config?.upstreams.first?.healthCheck)
        #expect(defaults.passes(200) && defaults.passes(301) && !defaults.passes(404))
        let bad = load(config(#"{ "path": "/h", "expected_statuses": ["2x", 99], "headers": { "Host": "x" } }"#)).errors.map(\.description)
        #expect(bad == [
            "upstreams.u.health_check.headers.Host: Host is set by the gateway itself (use health_check.host)",
            #"upstreams.u.health_check.expected_statuses[0]: expected a status (100-599) or a class ("2xx")"#,
            #"upstreams.u.health_check.expected_statuses[1]: expected a status (100-599) or a class ("2xx")"#,
        ])
    }

    // intercept_errors: true, false or an object, at the top level and per route; statuses as codes or classes of 4xx/5xx.
    @Test func interceptErrorsShapes() throws {
        let config = { (top: String, route: String) in
            #"{ "listeners": [{ "name": "l", "port": 1 }], \#(top) "upstreams": { "u": { "targets": ["http://10.0.0.1:80"] } }, "routes": [{ "name": "r", "upstream": "u" \#(route) }] }"#
        }
        let on = try #require(load(config(#""intercept_errors": true,"#, "")).config)
        #expect(on.interceptErrors == InterceptErrorsConfig())
        #expect(on.interceptErrors?.covers(500) == true && on.interceptErrors?.covers(599) == true && on.interceptErrors?.covers(404) == false)
        #expect(on.routes[0].interceptErrors == nil)  // inherits
        #expect(try #require(load(config(#""intercept_errors": false,"#, "")).config).interceptErrors == nil)

        let route = try #require(
            load(config("", #", "intercept_errors": { "statuses": ["4xx", 502], "keep_json": true, "keep_headers": ["Retry-After", "X-Trace"] }"#)).config?.routes[0]
                .interceptErrors)
        #expect(route.statuses == [4, 502] && route.keepJSON && route.keepHeaders == ["retry-after", "x-trace"])
        #expect(route.covers(404) && route.covers(502) && !route.covers(500))
        let off = try #require(load(config(#""intercept_errors": true,"#, #", "intercept_errors": false"#)).config?.routes[0].interceptErrors)
        #expect(!off.enabled)

        let bad = load(config(#""intercept_errors": { "statuses": [302, "3xx", "5xx", 600] },"#, #", "intercept_errors": { "statuses": [], "keep_headers": ["Content-Length", "Content-Type", "bad name"] }"#))
            .errors.map(\.description).sorted()
        #expect(bad == [
            #"intercept_errors.statuses[0]: expected a status (400-599) or a class ("5xx")"#,
            #"intercept_errors.statuses[1]: expected a status (400-599) or a class ("5xx")"#,
            #"intercept_errors.statuses[3]: expected a status (400-599) or a class ("5xx")"#,
            "routes[0].intercept_errors.keep_headers[0]: \"Content-Length\" is not a field the gateway's answer can take from the upstream's (framing, hop-by-hop and Content-Type are its own)",
            "routes[0].intercept_errors.keep_headers[1]: \"Content-Type\" is not a field the gateway's answer can take from the upstream's (framing, hop-by-hop and Content-Type are its own)",
            "routes[0].intercept_errors.keep_headers[2]: \"bad name\" is not a field the gateway's answer can take from the upstream's (framing, hop-by-hop and Content-Type are its own)",
            "routes[0].intercept_errors.statuses: list at least one status, or set intercept_errors to false",
        ], "\(bad)")

        // On a route that answers itself there is no upstream answer to replace.
        let answering = load(minimal(route: #"{ "name": "r", "respond": { "status": 410, "code": "GONE", "message": "Gone." }, "intercept_errors": true }"#))
        #expect(answering.warnings.map(\.description).contains("warning: routes[0].intercept_errors: does nothing here: a route with respond answers itself, no upstream answers"), "\(answering.warnings)")
    }

    // deprecation: RFC 3339 dates or date-times (offsets applied), a link, refusal only with a sunset after the date.
    @Test func deprecationShapes() throws {
        let route = { (deprecation: String) in self.minimal(route: #"{ "name": "r", "upstream": "u", "deprecation": \#(deprecation) }"#) }
        let full = try #require(
            load(route(#"{ "date": "1970-01-02", "sunset": "2026-06-01T12:30:15.25-01:00", "link": "https://dev.example/v2", "refuse_after_sunset": true }"#))
                .config?.routes[0].deprecation)
        #expect(full.date == 86_400)
        #expect(full.sunset == 1_780_272_000 + 13 * 3600 + 30 * 60 + 15)
        #expect(full.link == "https://dev.example/v2" && full.refuseAfterSunset)
        #expect(load(route(#"{ "date": "2026-06-01" }"#)).config?.routes[0].deprecation == DeprecationConfig(date: 1_780_272_000))

        let bad = load(route(#"{ "date": "2026-02-30", "sunset": "2026-06-01 10:00", "link": "ftp://x", "refuse_after_sunset": true }"#)).errors.map(\.description)
        #expect(bad.sorted() == [
            #"routes[0].deprecation.date: expected an RFC 3339 time such as "2027-01-31T00:00:00Z" (or a date, "2027-01-31", meaning its midnight UTC)"#,
            "routes[0].deprecation.link: expected an absolute http(s) URL (printable ASCII, no spaces, quotes or angle brackets)",
            #"routes[0].deprecation.sunset: expected an RFC 3339 time such as "2027-01-31T00:00:00Z" (or a date, "2027-01-31", meaning its midnight UTC)"#,
        ], "\(bad)")
        let order = load(route(#"{ "date": "2026-06-01", "sunset": "2026-05-01" }"#)).errors.map(\.description)
        #expect(order == ["routes[0].deprecation.sunset: comes before the deprecation date"])
        #expect(load(route(#"{ "date": "2026-06-01", "refuse_after_sunset": true }"#)).errors.map(\.description) == [
            "routes[0].deprecation.refuse_after_sunset: needs a sunset date"
        ])
        let passed = load(route(#"{ "date": "2019-01-01", "sunset": "2020-01-01", "refuse_after_sunset": true }"#))
        #expect(passed.warnings.map(\.description).contains("warning: routes[0].deprecation.sunset: has passed: every request of this route is answered 410 API_SUNSET"))
    }

    // reuse_port: a boolean, off unless given.
    @Test func reusePortShapes() {
        let config = { (listener: String) in
            #"{ "listeners": [\#(listener)], "upstreams": { "u": { "targets": ["http://127.0.0.1:9"] } }, "routes": [{ "name": "r", "upstream": "u" }] }"#
        }
        #expect(load(config(#"{ "name": "l", "port": 8080, "reuse_port": true }"#)).config?.listeners.first?.reusePort == true)
        #expect(load(config(#"{ "name": "l", "port": 8080 }"#)).config?.listeners.first?.reusePort == false)
        let bad = load(config(#"{ "name": "l", "port": 8080, "reuse_port": "yes" }"#)).errors.map(\.description)
        #expect(bad.count == 1 && bad.first?.hasPrefix("listeners[0].reuse_port:") == true, "\(bad)")
    }

    // A route that answers itself names no upstream; its answer is checked like everything else.
    @Test func routeAnswers() throws {
        let good = load(minimal(route: #"{ "name": "r", "redirect": { "location": "https://new.example.com", "append_path": true } }"#))
        #expect(good.errors.isEmpty)
        #expect(good.config?.routes.first?.answer == .redirect(location: "https://new.example.com", status: 308, appendPath: true))
        let respond = load(minimal(route: #"{ "name": "r", "respond": { "status": 410, "code": "GONE", "message": "Gone." } }"#))
        #expect(respond.config?.routes.first?.answer == .error(status: 410, code: "GONE", message: "Gone.", retryAfterSeconds: nil))
        let bad = load(minimal(route: #"{ "name": "r", "upstream": "u", "redirect": { "location": "new.example.com", "status": 304 }, "respond": { "status": 200, "code": "gone", "message": "" } }"#)).errors.map(\.description)
        #expect(bad == [
            "routes[0].redirect.location: expected an absolute URL (https://...) or a path (/...)",
            "routes[0].redirect.status: expected 301, 302, 303, 307 or 308",
            "routes[0].respond.status: 200 is out of range (400...599)",
            #"routes[0].respond.code: codes are upper case with underscores, like the gateway's own (e.g. "API_RETIRED")"#,
            "routes[0].respond.message: must not be empty",
            "routes[0].respond: a route answers itself in one way: redirect, respond are given",
            "routes[0].upstream: a route with redirect answers itself and forwards nowhere",
        ])
    }

    // A route with the very same match as an earlier one never gets a request (ties go to the first): flagged.
    @Test func shadowedRoutes() {
        let config = { (routes: String) in
            #"{ "listeners": [{ "name": "l", "port": 1 }], "upstreams": { "u": { "targets": ["http://127.0.0.1:9"] } }, "routes": \#(routes) }"#
        }
        let shadowed = load(config(#"""
            [{ "name": "a", "match": { "hosts": ["x.test", "y.test"], "path_prefix": "/api/", "headers": { "x-a": "1", "x-b": "2" } }, "upstream": "u" },
             { "name": "b", "match": { "hosts": ["y.test", "x.test"], "path_prefix": "/API", "headers": { "x-b": "2", "x-a": "1" } }, "upstream": "u" },
             { "name": "c", "upstream": "u" },
             { "name": "d", "redirect": { "location": "/" } }]
            """#)).warnings.map(\.description)
        #expect(shadowed == [
            #"warning: routes[1].match: never matches: routes[0] ("a") has the same match and comes first"#,
            #"warning: routes[3].match: never matches: routes[2] ("c") has the same match and comes first"#,
        ])
        let distinct = load(config(#"""
            [{ "name": "a", "match": { "path_prefix": "/api", "methods": ["GET"] }, "upstream": "u" },
             { "name": "b", "match": { "path_prefix": "/api", "methods": ["POST"] }, "upstream": "u" },
             { "name": "c", "match": { "path_prefix": "/" }, "upstream": "u" },
             { "name": "d", "upstream": "u" }]
            """#)).warnings
        #expect(distinct.isEmpty)
    }

    // A split names its upstreams with weights (default 1) and optionally a sticky key; every mistake is reported.
    @Test func routeSplits() throws {
        let upstreams = #""upstreams": { "v1": { "targets": ["http://127.0.0.1:9"] }, "v2": { "targets": ["http://127.0.0.1:2"] } }"#
        let config = { (route: String) in #"{ "listeners": [{ "name": "l", "port": 1 }], \#(upstreams), "routes": [\#(route)] }"# }
        let good = load(config(#"{ "name": "r", "split": { "upstreams": [{ "name": "v1", "weight": 95 }, { "name": "v2", "weight": 5 }], "sticky_on": "cookie:session" } }"#))
        #expect(good.errors.isEmpty)
        #expect(good.warnings.isEmpty)
        let split = try #require(good.config?.routes.first?.split)
        #expect(split == RouteSplitConfig(members: [.init(upstream: "v1", weight: 95), .init(upstream: "v2", weight: 5)], stickyOn: .cookie("session")))
        #expect(good.config?.routes.first?.upstreamNames == ["v1", "v2"])
        let defaults = load(config(#"{ "name": "r", "split": { "upstreams": [{ "name": "v1" }, { "name": "v2" }] } }"#))
        #expect(defaults.config?.routes.first?.split == RouteSplitConfig(members: [.init(upstream: "v1", weight: 1), .init(upstream: "v2", weight: 1)]))
        let bad = load(config(#"""
            { "name": "r", "upstream": "v1", "split": { "upstreams": [{ "name": "v1", "weight": 0 }, { "name": "v3", "weight": 0 }, { "name": "v1", "weight": 0 }], "sticky_on": "session" } }
            """#)).errors.map(\.description)
        #expect(bad == [
            #"routes[0].split.sticky_on: expected "ip", "consumer", "header:NAME" or "cookie:NAME""#,
            #"routes[0].split.upstreams[2].name: "v1" is already in this split"#,
            "routes[0].split.upstreams: at least one weight must be above 0",
            "routes[0].upstream: a route forwards either to one upstream or to a split, not both",
        ])
        let unknown = load(config(#"{ "name": "r", "split": { "upstreams": [{ "name": "v1" }, { "name": "v3" }] } }"#)).errors.map(\.description)
        #expect(unknown == [#"routes[0].split.upstreams[1].name: unknown upstream "v3" (did you mean "v1"?)"#])
        let answers = load(config(#"{ "name": "r", "respond": { "status": 503, "code": "DOWN", "message": "Down." }, "split": { "upstreams": [{ "name": "v1" }] } }"#)).errors.map(\.description)
        #expect(answers == ["routes[0].split: a route with respond answers itself and forwards nowhere"])
        let cookie = load(config(#"{ "name": "r", "split": { "upstreams": [{ "name": "v1" }, { "name": "v2" }], "sticky_on": "cookie:canary", "set_cookie": true } }"#))
        #expect(cookie.config?.routes.first?.split?.setCookie == true)
        let setCookieAlone = load(config(#"{ "name": "r", "split": { "upstreams": [{ "name": "v1" }, { "name": "v2" }], "sticky_on": "ip", "set_cookie": true } }"#)).errors.map(\.description)
        #expect(setCookieAlone == [#"routes[0].split.set_cookie: needs sticky_on "cookie:NAME" (the cookie it sets)"#])
        let consumer = load(config(#"{ "name": "r", "split": { "upstreams": [{ "name": "v1" }, { "name": "v2" }], "sticky_on": "consumer" } }"#)).warnings.map(\.description)
        #expect(consumer == [#"warning: routes[0].split.sticky_on: "consumer" on a route without auth keeps clients by their ip"#])
    }

    // A mirror names a known upstream other than the route's own, and a share of 0-100.
    @Test func routeMirrors() throws {
        let upstreams = #""upstreams": { "v1": { "targets": ["http://127.0.0.1:9"] }, "v2": { "targets": ["http://127.0.0.1:2"] } }"#
        let config = { (route: String) in #"{ "listeners": [{ "name": "l", "port": 1 }], \#(upstreams), "routes": [\#(route)] }"# }
        let good = load(config(#"{ "name": "r", "upstream": "v1", "mirror": { "upstream": "v2", "percent": 12.5 } }"#))
        #expect(good.errors.isEmpty)
        #expect(good.warnings.isEmpty, "v2 counts as used")
        #expect(good.config?.routes.first?.mirror == RouteMirrorConfig(upstream: "v2", percent: 12.5))
        let all = load(config(#"{ "name": "r", "upstream": "v1", "mirror": { "upstream": "v2" } }"#))
        #expect(all.config?.routes.first?.mirror?.percent == 100)
        let bad = load(config(#"{ "name": "r", "upstream": "v1", "mirror": { "upstream": "v3", "percent": 101, "share": 1 } }"#)).errors.map(\.description)
        #expect(bad == [
            "routes[0].mirror.percent: 101.0 is out of range (0.0...100.0)",
            #"routes[0].mirror.share: unknown key; known keys here: "percent", "upstream""#,
            #"routes[0].mirror.upstream: unknown upstream "v3" (did you mean "v1"?)"#,
        ])
        let itself = load(config(#"{ "name": "r", "upstream": "v1", "mirror": { "upstream": "v1" } }"#)).warnings.map(\.description)
        #expect(itself == [
            #"warning: routes[0].mirror.upstream: the route forwards to "v1" already: mirrored requests reach it twice"#,
            #"warning: upstreams.v2: not used by any route"#,
        ])
        let answers = load(config(#"{ "name": "r", "respond": { "status": 503, "code": "DOWN", "message": "Down." }, "mirror": { "upstream": "v2" } }"#)).errors.map(\.description)
        #expect(answers == ["routes[0].mirror: a route with respond answers itself: there is nothing to mirror"])
    }

    // external_auth: named services at the top level, each route naming one; defaults filled, names checked.
    @Test func externalAuthShapes() throws {
        let upstreams = #""upstreams": { "app": { "targets": ["http://127.0.0.1:9"] }, "authz": { "targets": ["http://127.0.0.1:2"] } }"#
        let config = { (services: String, route: String) in
            #"{ "listeners": [{ "name": "l", "port": 1 }], \#(upstreams), "external_auth": \#(services), "routes": [\#(route)] }"#
        }
        let good = load(config(
            #"{ "sso": { "upstream": "authz", "path": "/verify", "request_headers": ["Authorization", "X-Session"], "upstream_headers": ["Remote-User"], "consumer_header": "Remote-User", "timeout_ms": 300, "on_error": "allow" } }"#,
            #"{ "name": "r", "upstream": "app", "external_auth": "sso", "rate_limits": [{ "name": "c", "algorithm": "sliding_window", "key": "consumer", "limit": 5, "window_seconds": 1 }] }"#))
        #expect(good.errors.isEmpty)
        #expect(good.warnings.isEmpty, "authz counts as used; consumer_header names the consumer for the limit")
        let service = try #require(good.config?.externalAuth.first)
        var expected = ExternalAuthConfig(name: "sso", upstream: "authz", path: "/verify")
        expected.requestHeaders = ["authorization", "x-session"]
        expected.upstreamHeaders = ["remote-user"]
        expected.consumerHeader = "remote-user"
        expected.timeoutMs = 300
        expected.onError = .allow
        #expect(service == expected)
        #expect(good.config?.routes.first?.externalAuth == "sso")

        let defaults = try #require(load(config(#"{ "sso": { "upstream": "authz", "path": "/auth" } }"#, #"{ "name": "r", "upstream": "app", "external_auth": "sso" }"#)).config?.externalAuth.first)
        #expect(defaults.requestHeaders == nil, "all of the client's fields")
        #expect(defaults.clientHeaders == ["www-authenticate", "location", "set-cookie"])
        #expect(defaults.upstreamHeaders.isEmpty)
        #expect(defaults.timeoutMs == 1000)
        #expect(defaults.onError == .deny)

        let bad = load(config(
            #"{ "sso": { "upstream": "authx", "path": "verify", "upstream_headers": ["Host", "x y"], "client_headers": ["content-length"], "on_error": "ignore", "cache": true }, "other": {} }"#,
            #"{ "name": "r", "upstream": "app", "external_auth": "ssx" }"#)).errors.map(\.description)
        #expect(bad == [
            #"external_auth.sso.path: "verify" must be a path starting with "/" (no query, fragment or spaces)"#,
            #"external_auth.sso.upstream_headers[0]: host is set by the gateway itself and cannot be copied here"#,
            #"external_auth.sso.upstream_headers[1]: "x y" is not a valid token (letters, digits and !#$%&'*+-.^_`|~)"#,
            #"external_auth.sso.client_headers[0]: content-length is set by the gateway itself and cannot be copied here"#,
            #"external_auth.sso.on_error: unknown value "ignore"; expected one of "deny", "allow""#,
            #"external_auth.sso.cache: unknown key; known keys here: "client_headers", "consumer_header", "on_error", "path", "request_headers", "timeout_ms", "upstream", "upstream_headers""#,
            #"external_auth.other.upstream: missing required key"#,
            #"external_auth.other.path: missing required key"#,
            #"external_auth.sso.upstream: unknown upstream "authx" (did you mean "authz"?)"#,
            #"routes[0].external_auth: unknown external_auth service "ssx" (did you mean "sso"?)"#,
        ])
        let gatewaySet = load(config(#"{ "sso": { "upstream": "authz", "path": "/a", "request_headers": ["X-Forwarded-Uri"] } }"#, #"{ "name": "r", "upstream": "app", "external_auth": "sso" }"#)).errors.map(\.description)
        #expect(gatewaySet == ["external_auth.sso.request_headers[0]: x-forwarded-uri is set by the gateway itself and cannot be copied here"])
        let unused = load(config(#"{ "sso": { "upstream": "authz", "path": "/auth" } }"#, #"{ "name": "r", "upstream": "app" }"#)).warnings.map(\.description)
        #expect(unused == [#"warning: external_auth.sso: not used by any route"#])
        let cached = load(config(#"{ "sso": { "upstream": "authz", "path": "/auth" } }"#, #"{ "name": "r", "upstream": "app", "external_auth": "sso", "cache": {} }"#)).warnings.map(\.description)
        #expect(cached == [#"warning: routes[0].cache: the cache is shared by everyone external_auth allows: per-user responses need Cache-Control: private or a Vary on the session field"#])
    }

    // compression: top level and per route, defaults filled, every mistake reported.
    @Test func compressionShapes() throws {
        let good = load(minimal(
            route: #"{ "name": "r", "upstream": "u", "compression": { "enabled": false } }"#,
            extra: #""compression": { "level": 9, "min_bytes": 256, "content_types": ["Application/JSON", "text/*", "+xml"] },"#))
        #expect(good.errors.isEmpty)
        let top = try #require(good.config?.compression)
        #expect(top.level == 9)
        #expect(top.minBytes == 256)
        #expect(top.contentTypes == ["application/json", "text/*", "+xml"])
        #expect(good.config?.routes.first?.compression?.enabled == false)
        let defaults = try #require(load(minimal(extra: #""compression": {},"#)).config?.compression)
        #expect(defaults == CompressionConfig())
        #expect(defaults.level == 5)
        #expect(defaults.encodings == [.br, .gzip])
        #expect(defaults.brotliLevel == 4)
        let narrowed = try #require(load(minimal(extra: #""compression": { "encodings": ["gzip"], "brotli_level": 9 },"#)).config?.compression)
        #expect(narrowed.encodings == [.gzip])
        let withZstd = try #require(load(minimal(extra: #""compression": { "encodings": ["zstd", "gzip"], "zstd_level": 7 },"#)).config?.compression)
        #expect(withZstd.encodings == [.zstd, .gzip] && withZstd.zstdLevel == 7 && defaults.zstdLevel == 3)
        let badCodings = load(minimal(extra: #""compression": { "encodings": ["deflate"], "brotli_level": 12, "zstd_level": 20 },"#)).errors.map(\.description)
        #expect(badCodings == [
            #"compression.encodings[0]: unknown value "deflate"; expected one of "zstd", "br", "gzip""#,
            "compression.brotli_level: 12 is out of range (0...11)",
            "compression.zstd_level: 20 is out of range (1...19)",
        ])
        let bad = load(minimal(extra: #""compression": { "level": 0, "min_bytes": -1, "content_types": ["json", "text/", "+"], "gzip": true },"#)).errors.map(\.description)
        #expect(bad == [
            "compression.level: 0 is out of range (1...9)",
            "compression.min_bytes: -1 is too small (at least 0)",
            #"compression.content_types[0]: expected a media type ("application/json"), a whole type ("text/*") or a suffix ("+json")"#,
            #"compression.content_types[1]: expected a media type ("application/json"), a whole type ("text/*") or a suffix ("+json")"#,
            #"compression.content_types[2]: expected a media type ("application/json"), a whole type ("text/*") or a suffix ("+json")"#,
            #"compression.gzip: unknown key; known keys here: "brotli_level", "content_types", "enabled", "encodings", "level", "min_bytes", "zstd_level""#,
        ])
    }

    // add_prefix is a plain URI path (its trailing slash dropped); "/" adds nothing.
    @Test func addPrefixShapes() {
        let good = load(minimal(route: #"{ "name": "r", "upstream": "u", "add_prefix": "/v2/%C3%A9/" }"#))
        #expect(good.config?.routes.first?.addPrefix == "/v2/%C3%A9")
        let root = load(minimal(route: #"{ "name": "r", "upstream": "u", "add_prefix": "/" }"#))
        #expect(root.config?.routes.first?.addPrefix == nil)
        #expect(root.warnings.map(\.description) == [#"warning: routes[0].add_prefix: "/" adds nothing"#])
        let bad = load(minimal(route: #"{ "name": "r", "upstream": "u", "add_prefix": "/v2/../admin" }"#)).errors.map(\.description)
        #expect(bad == [#"routes[0].add_prefix: "/v2/../admin" may hold only URI path characters (percent-encode others) and no . or .. segments"#])
        let unicode = load(minimal(route: #"{ "name": "r", "upstream": "u", "add_prefix": "/é" }"#)).errors.count
        #expect(unicode == 1)
    }

    // A route's access_log: true, false or "errors".
    @Test func routeAccessLog() {
        let routes = #"[{ "name": "a", "upstream": "u", "access_log": false }, { "name": "b", "match": { "path": "/b" }, "upstream": "u", "access_log": "errors" }, { "name": "c", "match": { "path": "/c" }, "upstream": "u" }, { "name": "d", "match": { "path": "/d" }, "upstream": "u", "access_log": { "sample_percent": 2.5 } }]"#
        let good = load(#"{ "listeners": [{ "name": "l", "port": 1 }], "upstreams": { "u": { "targets": ["http://127.0.0.1:9"] } }, "routes": \#(routes) }"#)
        #expect(good.config?.routes.map(\.accessLog) == [.off, .errors, .all, .sampled(0.025)])
        let bad = load(minimal(route: #"{ "name": "r", "upstream": "u", "access_log": "sometimes" }"#)).errors.map(\.description)
        #expect(bad == [#"routes[0].access_log: expected true, false, "errors" or {"sample_percent": N}"#])
        let over = load(minimal(route: #"{ "name": "r", "upstream": "u", "access_log": { "sample_percent": 150 } }"#)).errors.count
        #expect(over == 1)
    }
}
