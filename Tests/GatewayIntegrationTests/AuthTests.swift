import Crypto
import DemoUpstream
import Foundation
import GatewayConfig
import GatewayPolicy
import JWTKit
import Testing
import TestSupport

/// Signs arbitrary header/payload JSON with a jwt-kit algorithm, so tests can also build tokens no honest
/// library would (alg none, confused algorithms, forbidden headers, wrong claim types).
struct TokenFactory: Sendable {
    let alg: String
    let kid: String?
    let algorithm: any JWTAlgorithm

    static func make(alg: String, kid: String?, _ add: (JWTKeyCollection, JWKIdentifier?) async -> Void) async throws -> TokenFactory {
        let collection = JWTKeyCollection()
        let identifier = kid.map { JWKIdentifier(string: $0) }
        await add(collection, identifier)
        return TokenFactory(alg: alg, kid: kid, algorithm: try await collection.getKey(for: identifier, alg: alg))
    }

    func token(claims: [String: Any], header: [String: Any] = [:], alg: String? = nil, kid: String?? = .none) -> String {
        var fields: [String: Any] = ["typ": "JWT", "alg": alg ?? self.alg]
        if let kid = kid ?? self.kid { fields["kid"] = kid }
        for (name, value) in header { fields[name] = value }
        let signingInput = Self.part(fields) + "." + Self.part(claims)
        let signature = try! algorithm.sign(Array(signingInput.utf8))
        return signingInput + "." + Self.base64URL(signature)
    }

    static func part(_ object: [String: Any]) -> String {
        base64URL(try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
    }

    static func base64URL(_ bytes: some Sequence<UInt8>) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}

/// JWT and API-key authentication over real sockets, with keys generated per test run.
@Suite(.serialized) struct AuthTests {
    static let now = Int(Date().timeIntervalSince1970)

    static func claims(_ extra: [String: Any] = [:]) -> [String: Any] {
        var claims: [String: Any] = [
            "sub": "user-42", "iss": "https://id.test/", "aud": "orders-api", "exp": now + 600, "iat": now - 5,
            "scope": "orders:read orders:write",
        ]
        for (name, value) in extra { claims[name] = value }
        return claims
    }

    /// The key material of one run: every algorithm's signer, and the config entries verifying them.
    struct Keys {
        var factories: [TokenFactory] = []
        var configEntries: [String] = []
        var rsaPublicPEM = ""
        /// Holds the key files (removed when the last reference goes).
        var pki: TestPKI?
    }

    static func makeKeys() async throws -> Keys {
        var keys = Keys()
        for bits in [256, 384, 512] {
            let secret = (0..<(bits / 8)).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
            let alg = "HS\(bits)"
            let digest: DigestAlgorithm = bits == 256 ? .sha256 : bits == 384 ? .sha384 : .sha512
            keys.factories.append(try await TokenFactory.make(alg: alg, kid: "hs\(bits)") { await $0.add(hmac: HMACKey(from: secret), digestAlgorithm: digest, kid: $1) })
            keys.configEntries.append(#"{ "kid": "hs\#(bits)", "alg": "\#(alg)", "secret": "\#(secret)" }"#)
        }
        let pki = try TestPKI()
        keys.pki = pki
        let rsaKey = pki.path("rsa.pem")
        try shellSync("openssl genrsa -out \(rsaKey) 2048")
        let rsaPrivate = try Insecure.RSA.PrivateKey(pem: String(contentsOfFile: rsaKey, encoding: .utf8))
        keys.rsaPublicPEM = rsaPrivate.publicKey.pemRepresentation
        let escapedRSA = keys.rsaPublicPEM.replacingOccurrences(of: "\n", with: "\\n")
        for (prefix, pss) in [("RS", false), ("PS", true)] {
            for bits in [256, 384, 512] {
                let alg = "\(prefix)\(bits)"
                let digest: DigestAlgorithm = bits == 256 ? .sha256 : bits == 384 ? .sha384 : .sha512
                keys.factories.append(
                    try await TokenFactory.make(alg: alg, kid: alg.lowercased()) { collection, kid in
                        if pss {
                            await collection.add(pss: rsaPrivate, digestAlgorithm: digest, kid: kid)
                        } else {
                            await collection.add(rsa: rsaPrivate, digestAlgorithm: digest, kid: kid)
                        }
                    })
                keys.configEntries.append(#"{ "kid": "\#(alg.lowercased())", "alg": "\#(alg)", "public_key": "\#(escapedRSA)" }"#)
            }
        }
        let es256 = ES256PrivateKey()
        keys.factories.append(try await TokenFactory.make(alg: "ES256", kid: "es256") { await $0.add(ecdsa: es256, kid: $1) })
        keys.configEntries.append(#"{ "kid": "es256", "alg": "ES256", "public_key": "\#(es256.publicKey.pemRepresentation.replacingOccurrences(of: "\n", with: "\\n"))" }"#)
        let es384 = ES384PrivateKey()
        keys.factories.append(try await TokenFactory.make(alg: "ES384", kid: "es384") { await $0.add(ecdsa: es384, kid: $1) })
        let es384File = pki.path("es384.pem")
        try es384.publicKey.pemRepresentation.write(toFile: es384File, atomically: true, encoding: .utf8)
        keys.configEntries.append(#"{ "kid": "es384", "alg": "ES384", "public_key_file": "\#(es384File)" }"#)
        let ed = try EdDSA.PrivateKey(curve: .ed25519)
        keys.factories.append(try await TokenFactory.make(alg: "EdDSA", kid: "ed") { await $0.add(eddsa: ed, kid: $1) })
        keys.configEntries.append(#"{ "kid": "ed", "alg": "EdDSA", "public_key": "\#(ed.publicKey.pemRepresentation.replacingOccurrences(of: "\n", with: "\\n"))" }"#)
        return keys
    }

    static let apiKey = "gw_test-key-for-billing"
    static let readOnlyKey = "gw_test-key-read-only"

    static func config(upstreamPort: Int, jwt: String, routes: String? = nil) -> String {
        let billing = APIKeyDigest.hex(apiKey)
        let readOnly = APIKeyDigest.hex(readOnlyKey)
        return """
            { "workers": 1,
              "listeners": [{ "name": "test", "address": "127.0.0.1", "port": 0 }],
              "auth": {
                "jwt": \(jwt),
                "api_keys": [{ "id": "billing-svc", "sha256": "\(billing)", "scopes": ["orders:read", "orders:write"] },
                             { "id": "reader", "sha256": "\(readOnly)", "scopes": ["orders:read"] }] },
              "upstreams": { "demo": { "targets": ["http://127.0.0.1:\(upstreamPort)"] } },
              "routes": \(routes ?? #"""
                [{ "name": "write", "match": { "path_prefix": "/write" }, "upstream": "demo", "auth": { "require": ["jwt", "api_key"], "scopes": ["orders:write"] } },
                 { "name": "orders", "match": { "path_prefix": "/orders" }, "upstream": "demo", "auth": { "require": ["jwt", "api_key"], "scopes": ["orders:read"] } },
                 { "name": "public", "upstream": "demo" }]
                """#) }
            """
    }

    static func jwtSection(keys: [String], extra: String = "") -> String {
        #"{ "issuer": "https://id.test/", "audiences": ["orders-api", "other"], "leeway_seconds": 30, "keys": [\#(keys.joined(separator: ", "))] \#(extra) }"#
    }

    // Valid tokens of every algorithm pass, and the identity goes upstream.
    @Test func everyAlgorithmVerifies() async throws {
        let keys = try await Self.makeKeys()
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(upstreamPort: upstreams[0].port, jwt: Self.jwtSection(keys: keys.configEntries))) { gateway in
                var passed: [String] = []
                for factory in keys.factories {
                    let response = try await gateway.request("GET", "/orders/1", headers: [("Authorization", "Bearer \(factory.token(claims: Self.claims()))")])
                    if response.status == 200 && response.echoedHeaders["x-auth-subject"] == "user-42" && response.echoedHeaders["x-auth-method"] == "jwt"
                        && response.echoedHeaders["x-auth-scopes"] == "orders:read orders:write"
                    {
                        passed.append(factory.alg)
                    } else {
                        Issue.record("\(factory.alg): \(response)")
                    }
                }
                #expect(passed == ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"])
            }
        }
    }

    // Every kind of bad token gets the same 401 and never reaches the upstream.
    @Test func badTokensAreRefusedBeforeTheUpstream() async throws {
        let keys = try await Self.makeKeys()
        let hs = keys.factories[0]
        let rs = keys.factories[3]
        // HS/RS confusion: an HS256 token "signed" with the RSA public key as the secret, naming the RSA kid.
        let confused = try await TokenFactory.make(alg: "HS256", kid: "rs256") {
            await $0.add(hmac: HMACKey(from: keys.rsaPublicPEM), digestAlgorithm: .sha256, kid: $1)
        }
        let valid = hs.token(claims: Self.claims())
        let parts = valid.split(separator: ".").map(String.init)
        let tampered = parts[0] + "." + TokenFactory.part(Self.claims(["sub": "admin"])) + "." + parts[2]
        let unsigned = TokenFactory.part(["alg": "none", "typ": "JWT"]) + "." + TokenFactory.part(Self.claims()) + "."
        let cases: [(String, String)] = [
            ("expired", hs.token(claims: Self.claims(["exp": Self.now - 120]))),
            ("not yet valid", hs.token(claims: Self.claims(["nbf": Self.now + 600]))),
            ("issued in the future", hs.token(claims: Self.claims(["iat": Self.now + 600]))),
            ("no exp", hs.token(claims: Self.claims().filter { $0.key != "exp" })),
            ("exp as a string", hs.token(claims: Self.claims(["exp": "\(Self.now + 600)"]))),
            ("wrong issuer", hs.token(claims: Self.claims(["iss": "https://evil.test/"]))),
            ("wrong audience", hs.token(claims: Self.claims(["aud": ["someone-else"]]))),
            ("bad signature", tampered),
            ("truncated", parts[0] + "." + parts[1]),
            ("alg none", unsigned),
            ("alg none with a signature", hs.token(claims: Self.claims(), alg: "none")),
            ("HS/RS confusion", confused.token(claims: Self.claims())),
            ("RS token claiming HS", rs.token(claims: Self.claims(), alg: "HS256")),
            ("unknown kid", hs.token(claims: Self.claims(), kid: "nobody")),
            ("embedded jwk", hs.token(claims: Self.claims(), header: ["jwk": ["kty": "oct", "k": "AAAA"]])),
            ("jku", hs.token(claims: Self.claims(), header: ["jku": "https://evil.test/jwks"])),
            ("x5u", hs.token(claims: Self.claims(), header: ["x5u": "https://evil.test/cert"])),
            ("crit", hs.token(claims: Self.claims(), header: ["crit": ["exp"]])),
            ("malformed base64", "abc$.def.ghi"),
            ("malformed JSON", TokenFactory.base64URL(Array("{not json".utf8)) + "." + parts[1] + "." + parts[2]),
            ("oversized", hs.token(claims: Self.claims(["pad": String(repeating: "x", count: 9000)]))),
        ]
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(upstreamPort: upstreams[0].port, jwt: Self.jwtSection(keys: keys.configEntries))) { gateway in
                let ok = try await gateway.request("GET", "/orders/1", headers: [("Authorization", "Bearer \(valid)")])
                #expect(ok.status == 200)
                let served = upstreams[0].requestsServed
                var outcomes: [String] = []
                for (name, token) in cases {
                    let response = try await gateway.request("GET", "/orders/1", headers: [("Authorization", "Bearer \(token)")])
                    outcomes.append("\(name): \(response.status) \(response.errorCode ?? "-") \(response.header("www-authenticate") ?? "-")")
                }
                let expected = cases.map { #"\#($0.0): 401 UNAUTHENTICATED Bearer realm="gateway", error="invalid_token""# }
                #expect(outcomes == expected)
                #expect(upstreams[0].requestsServed == served, "no bad token reached the upstream")
                let messages = Set(gateway.logs.entries("authentication failed").compactMap { $0["reason"] as? String })
                #expect(messages.count > 10, "the log says why, the client does not")
            }
        }
    }

    // API keys: the right key passes with its id forwarded (the key itself does not go upstream), a wrong key
    // is 401, a missing scope 403, no credentials 401 without an error code; X-Auth-* from clients is dropped.
    @Test func apiKeysScopesAndSpoofing() async throws {
        let keys = try await Self.makeKeys()
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(upstreamPort: upstreams[0].port, jwt: Self.jwtSection(keys: keys.configEntries))) { gateway in
                let byHeader = try await gateway.request("GET", "/write/1", headers: [("X-API-Key", Self.apiKey), ("X-Auth-Subject", "root")])
                #expect(byHeader.status == 200)
                #expect(byHeader.echoedHeaders["x-auth-subject"] == "billing-svc")
                #expect(byHeader.echoedHeaders["x-auth-method"] == "api_key")
                #expect(byHeader.echoedHeaders["x-api-key"] == nil)
                let byAuthorization = try await gateway.request("GET", "/orders/1", headers: [("Authorization", "ApiKey \(Self.readOnlyKey)")])
                #expect(byAuthorization.status == 200)
                #expect(byAuthorization.echoedHeaders["x-auth-subject"] == "reader")
                #expect(byAuthorization.echoedHeaders["authorization"] == nil)

                let wrong = try await gateway.request("GET", "/orders/1", headers: [("X-API-Key", "gw_not-a-key")])
                #expect(wrong.status == 401)
                #expect(wrong.errorCode == "UNAUTHENTICATED")
                let missingScope = try await gateway.request("GET", "/write/1", headers: [("X-API-Key", Self.readOnlyKey)])
                #expect(missingScope.status == 403)
                #expect(missingScope.errorCode == "FORBIDDEN")
                #expect(missingScope.header("www-authenticate")?.contains(#"error="insufficient_scope""#) == true)
                let jwtLacking = try await gateway.request(
                    "GET", "/write/1", headers: [("Authorization", "Bearer \(keys.factories[0].token(claims: Self.claims(["scope": "orders:read"])))")])
                #expect(jwtLacking.status == 403)
                let none = try await gateway.request("GET", "/orders/1")
                #expect(none.status == 401)
                #expect(none.header("www-authenticate") == #"Bearer realm="gateway""#)
                #expect(none.errorRequestID == none.header("x-request-id"))

                let spoofed = try await gateway.request(
                    "GET", "/public", headers: [("X-Auth-Subject", "admin"), ("x-auth-scopes", "everything"), ("X-AUTH-METHOD", "jwt")])
                #expect(spoofed.status == 200)
                let leaked = spoofed.echoedHeaders.keys.filter { $0.hasPrefix("x-auth-") }
                #expect(leaked.isEmpty, "\(leaked)")

                let logText = gateway.logs.all.joined(separator: "\n")
                #expect(!logText.contains(Self.apiKey) && !logText.contains(Self.readOnlyKey) && !logText.contains("gw_not-a-key"))
                let access = try await gateway.accessLog(for: byHeader)
                #expect(access["consumer"] as? String == "billing-svc")
            }
        }
    }

    // HTTP Basic over a real connection: the challenges a browser prompts on, users from the config and an
    // htpasswd file, the user upstream and the password never, scopes, and nothing of the password in the logs.
    @Test func basicPasswords() async throws {
        let keys = try await Self.makeKeys()
        // "correct horse": bcrypt cost 4 inline, SHA-512-crypt (from `openssl passwd -6`) in the file.
        let bcrypt = "$2y$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e"
        let htpasswd = FileManager.default.temporaryDirectory.appendingPathComponent("htpasswd-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: htpasswd) }
        try "# from htpasswd\nviewer:$6$saltsalt$hRM5XZ86KXEw9UOmjigeVqFgULtFB2sgpC9lXQDfMib3Zgw7mEiUvBJI2EplzfAqxL5Vvwp2scFtv/uamSo5z0\n".write(
            to: htpasswd, atomically: true, encoding: .utf8)
        let basic = { (user: String, password: String) in ("Authorization", "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()) }
        try await withUpstreams { upstreams in
            let config = """
                { "workers": 1,
                  "listeners": [{ "name": "test", "address": "127.0.0.1", "port": 0 }],
                  "auth": { "jwt": \(Self.jwtSection(keys: keys.configEntries)),
                            "basic": { "realm": "Ops area", "htpasswd_file": "\(htpasswd.path)",
                                       "users": [{ "username": "ops", "password_hash": "\(bcrypt)", "scopes": ["admin"] }] } },
                  "upstreams": { "demo": { "targets": ["http://127.0.0.1:\(upstreams[0].port)"] } },
                  "routes": [{ "name": "admin", "match": { "path_prefix": "/admin" }, "upstream": "demo", "auth": { "require": ["jwt", "basic"], "scopes": ["admin"] } },
                             { "name": "dashboard", "upstream": "demo", "auth": { "require": ["basic"] } }] }
                """
            try await withGateway(config) { gateway in
                let anonymous = try await gateway.request("GET", "/dashboard")
                #expect(anonymous.status == 401 && anonymous.errorCode == "UNAUTHENTICATED")
                #expect(anonymous.headers("www-authenticate") == [#"Basic realm="Ops area", charset="UTF-8""#])
                let mixed = try await gateway.request("GET", "/admin")
                #expect(mixed.headers("www-authenticate") == [#"Bearer realm="gateway""#, #"Basic realm="Ops area", charset="UTF-8""#])

                for attempt in 1...2 {  // the second is answered from the remembered check
                    let admitted = try await gateway.request("GET", "/dashboard", headers: [basic("ops", "correct horse")])
                    #expect(admitted.status == 200, "attempt \(attempt)")
                    #expect(admitted.echoedHeaders["x-auth-subject"] == "ops" && admitted.echoedHeaders["x-auth-method"] == "basic")
                    #expect(admitted.echoedHeaders["x-auth-scopes"] == "admin")
                    #expect(admitted.echoedHeaders["authorization"] == nil, "the password does not go upstream")
                }
                let fromFile = try await gateway.request("GET", "/dashboard", headers: [basic("viewer", "correct horse")])
                #expect(fromFile.status == 200 && fromFile.echoedHeaders["x-auth-subject"] == "viewer")
                let lacking = try await gateway.request("GET", "/admin/x", headers: [basic("viewer", "correct horse")])
                #expect(lacking.status == 403 && lacking.errorCode == "FORBIDDEN")
                let admin = try await gateway.request("GET", "/admin/x", headers: [basic("ops", "correct horse")])
                #expect(admin.status == 200)

                var refused: [String] = []
                for (user, password) in [("ops", "correct horsE"), ("root", "correct horse"), ("viewer", "")] {
                    let response = try await gateway.request("GET", "/dashboard", headers: [basic(user, password)])
                    refused.append("\(response.status) \(response.errorCode ?? "-")")
                }
                let garbled = try await gateway.request("GET", "/dashboard", headers: [("Authorization", "Basic not-base64!")])
                refused.append("\(garbled.status) \(garbled.errorCode ?? "-")")
                #expect(refused == Array(repeating: "401 UNAUTHENTICATED", count: 4))

                let logText = gateway.logs.all.joined(separator: "\n")
                #expect(logText.contains(#"password check failed for user \"root\" (wrong password or no such user)"#))
                #expect(!logText.contains("correct hors"), "no password in any log line")
                let access = try await gateway.accessLog(for: admin)
                #expect(access["consumer"] as? String == "ops")

                // A reload reads the file again and forgets what verified: a removed user is out at once.
                try "newcomer:\(bcrypt)\n".write(to: htpasswd, atomically: true, encoding: .utf8)
                try await gateway.gateway.reload(config: makeConfig(config))
                let removed = try await gateway.request("GET", "/dashboard", headers: [basic("viewer", "correct horse")])
                let added = try await gateway.request("GET", "/dashboard", headers: [basic("newcomer", "correct horse")])
                #expect(removed.status == 401 && added.status == 200)
            }
        }
    }

    // max_failures: an address that guessed wrong too often gets 429 for every Basic attempt (the right password
    // and remembered credentials included) while other addresses log in as usual.
    @Test func basicPasswordGuessingIsThrottled() async throws {
        let bcrypt = "$2y$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e"
        let basic = { (password: String) in ("Authorization", "Basic " + Data("ops:\(password)".utf8).base64EncodedString()) }
        try await withUpstreams { upstreams in
            let config = """
                { "workers": 1, "trusted_proxies": ["127.0.0.1"],
                  "listeners": [{ "name": "test", "address": "127.0.0.1", "port": 0 }],
                  "auth": { "basic": { "users": [{ "username": "ops", "password_hash": "\(bcrypt)" }],
                                       "max_failures": { "limit": 2, "window_seconds": 60 } } },
                  "upstreams": { "demo": { "targets": ["http://127.0.0.1:\(upstreams[0].port)"] } },
                  "routes": [{ "name": "dashboard", "upstream": "demo", "auth": { "require": ["basic"] } }] }
                """
            try await withGateway(config) { gateway in
                let guesser = ("X-Forwarded-For", "203.0.113.7")
                let colleague = ("X-Forwarded-For", "203.0.113.8")
                var statuses: [Int] = []
                for password in ["guess-1", "guess-2", "correct horse"] {
                    statuses.append(try await gateway.request("GET", "/", headers: [guesser, basic(password)]).status)
                }
                #expect(statuses == [401, 401, 429])
                let refused = try await gateway.request("GET", "/", headers: [guesser, basic("correct horse")])
                #expect(refused.errorCode == "RATE_LIMITED")
                let retryAfter = Int(refused.header("retry-after") ?? "") ?? 0
                #expect((59...60).contains(retryAfter), "until the first failure leaves the window")

                let admitted = try await gateway.request("GET", "/", headers: [colleague, basic("correct horse")])
                #expect(admitted.status == 200)
                let remembered = try await gateway.request("GET", "/", headers: [guesser, basic("correct horse")])
                #expect(remembered.status == 429, "a remembered check does not open a blocked address")
                #expect(gateway.logs.entries("authentication refused: too many failed password checks from this address").count == 3)
            }
        }
    }

    // auth.introspection over real sockets: an opaque token is asked about at the authorization server with the
    // gateway's client credentials, the answer is remembered (active and inactive alike), a token past its exp
    // or unknown is a 401, and an endpoint that fails is a 503, never a pass.
    @Test func opaqueTokensAreIntrospected() async throws {
        try await withUpstreams(2) { upstreams in
            let (api, idp) = (upstreams[0], upstreams[1])
            let config = """
                { "workers": 1,
                  "listeners": [{ "name": "test", "address": "127.0.0.1", "port": 0 }],
                  "auth": { "introspection": { "upstream": "idp", "path": "/introspect", "client_id": "gateway", "client_secret": "s3cret", "cache_seconds": 60 } },
                  "upstreams": { "api": { "targets": ["http://127.0.0.1:\(api.port)"] }, "idp": { "targets": ["http://127.0.0.1:\(idp.port)"] } },
                  "routes": [{ "name": "orders", "upstream": "api", "auth": { "require": ["introspection"], "scopes": ["orders:read"] } }] }
                """
            try await withGateway(config) { gateway in
                let bearer = { (token: String) in [("Authorization", "Bearer \(token)")] }
                for attempt in 1...2 {
                    let admitted = try await gateway.request("GET", "/orders/1", headers: bearer("alice-opaque"))
                    #expect(admitted.status == 200, "attempt \(attempt)")
                    #expect(admitted.echoedHeaders["x-auth-subject"] == "alice" && admitted.echoedHeaders["x-auth-method"] == "introspection")
                    #expect(admitted.echoedHeaders["x-auth-scopes"] == "orders:read orders:write")
                }
                let client = try await gateway.request("GET", "/orders/1", headers: bearer("reporting-opaque"))
                #expect(client.status == 200 && client.echoedHeaders["x-auth-subject"] == "reporting")

                var refused: [String] = []
                for token in ["nope", "nope", "expired-opaque"] {
                    let response = try await gateway.request("GET", "/orders/1", headers: bearer(token))
                    refused.append("\(response.status) \(response.header("www-authenticate") ?? "-")")
                }
                #expect(refused == Array(repeating: #"401 Bearer realm="gateway", error="invalid_token""#, count: 3))
                let anonymous = try await gateway.request("GET", "/orders/1")
                #expect(anonymous.status == 401 && anonymous.header("www-authenticate") == #"Bearer realm="gateway""#)

                let down = try await gateway.request("GET", "/orders/1", headers: bearer("broken"))
                #expect(down.status == 503 && down.errorCode == "AUTH_UNAVAILABLE")
                let failures = gateway.logs.entries("token introspection failed").map { $0["error"] as? String ?? "" }
                #expect(failures == ["the endpoint answered 500"])

                // Asked once per token: the second alice and the second "nope" were remembered.
                let asked = idp.behaviour.introspections.withLockedValue { $0 }
                #expect(asked == ["alice-opaque", "reporting-opaque", "nope", "expired-opaque", "broken"])
            }
        }
    }

    // The consumer a credential establishes is the rate-limit key: each API key gets its own budget.
    @Test func consumerKeyedRateLimits() async throws {
        let keys = try await Self.makeKeys()
        try await withUpstreams { upstreams in
            let routes = #"""
                [{ "name": "limited", "upstream": "demo", "auth": { "require": ["api_key"] },
                   "rate_limits": [{ "name": "per-consumer", "algorithm": "sliding_window", "key": "consumer", "limit": 2, "window_seconds": 60 }] }]
                """#
            try await withGateway(Self.config(upstreamPort: upstreams[0].port, jwt: Self.jwtSection(keys: keys.configEntries), routes: routes)) { gateway in
                var statuses: [String] = []
                for key in [Self.apiKey, Self.apiKey, Self.apiKey, Self.readOnlyKey, Self.readOnlyKey] {
                    statuses.append(String(try await gateway.request("GET", "/x", headers: [("X-API-Key", key)]).status))
                }
                #expect(statuses == ["200", "200", "429", "200", "200"])
                let anonymous = try await gateway.request("GET", "/x")
                #expect(anonymous.status == 401)
                #expect(anonymous.header("www-authenticate") == #"ApiKey realm="gateway""#)
            }
        }
    }

    // auth.claims: a route admits only tokens whose claims hold an accepted value (a tenant, one of some roles);
    // others are 403 with the reason in the log, never in the answer.
    @Test func routeClaimConditions() async throws {
        let keys = try await Self.makeKeys()
        try await withUpstreams { upstreams in
            let routes = #"""
                [{ "name": "acme-admin", "match": { "path_prefix": "/admin" }, "upstream": "demo",
                   "auth": { "require": ["jwt"], "claims": { "tenant": "acme", "roles": ["admin", "ops"] } } },
                 { "name": "public", "upstream": "demo" }]
                """#
            try await withGateway(Self.config(upstreamPort: upstreams[0].port, jwt: Self.jwtSection(keys: keys.configEntries), routes: routes)) { gateway in
                var statuses: [String] = []
                for extra: [String: Any] in [
                    ["tenant": "acme", "roles": ["viewer", "ops"]], ["tenant": "acme", "roles": "admin"], ["tenant": "other", "roles": ["admin"]],
                    ["tenant": "acme", "roles": ["viewer"]], ["tenant": "acme"],
                ] {
                    let token = keys.factories[0].token(claims: Self.claims(extra))
                    let response = try await gateway.request("GET", "/admin/x", headers: [("Authorization", "Bearer \(token)")])
                    statuses.append("\(response.status) \(response.errorCode ?? "-")")
                }
                #expect(statuses == ["200 -", "200 -", "403 FORBIDDEN", "403 FORBIDDEN", "403 FORBIDDEN"])
                let refusals = gateway.logs.entries("authorization failed").map { $0["missing"] as? String ?? "" }
                #expect(refusals == ["claim:tenant", "claim:roles", "claim:roles"])
            }
        }
    }

    // A "claim:tenant" rate limit: every user of a tenant shares one budget, whoever they are; another tenant has its own.
    @Test func claimKeyedRateLimits() async throws {
        let keys = try await Self.makeKeys()
        try await withUpstreams { upstreams in
            let routes = #"""
                [{ "name": "tenant-api", "upstream": "demo", "auth": { "require": ["jwt"] },
                   "rate_limits": [{ "name": "per-tenant", "algorithm": "sliding_window", "key": "claim:tenant", "limit": 2, "window_seconds": 60 }] }]
                """#
            try await withGateway(Self.config(upstreamPort: upstreams[0].port, jwt: Self.jwtSection(keys: keys.configEntries), routes: routes)) { gateway in
                var statuses: [Int] = []
                for (user, tenant) in [("u1", "acme"), ("u2", "acme"), ("u3", "acme"), ("u4", "globex")] {
                    let token = keys.factories[0].token(claims: Self.claims(["sub": user, "tenant": tenant]))
                    statuses.append(try await gateway.request("GET", "/x", headers: [("Authorization", "Bearer \(token)")]).status)
                }
                #expect(statuses == [200, 200, 429, 200])
            }
        }
    }

    // rate_limits[].overrides over a real Redis: one limit, other numbers per plan claim, and an exempt
    // service account; everyone else gets the limit's own numbers, and each caller's headers state its own.
    @Test func rateLimitOverridesPerPlanAndConsumer() async throws {
        let keys = try await Self.makeKeys()
        let redis = try await RedisServer()
        try await withUpstreams { upstreams in
            let routes = #"""
                [{ "name": "plans", "upstream": "demo", "auth": { "require": ["jwt", "api_key"] },
                   "rate_limits": [{ "name": "hourly", "algorithm": "sliding_window", "key": "consumer", "limit": 2, "window_seconds": 3600,
                                     "overrides": [{ "consumers": ["billing-svc"], "exempt": true },
                                                   { "claims": { "plan": ["gold", "platinum"] }, "limit": 4 }] }] }]
                """#
            let config = Self.config(upstreamPort: upstreams[0].port, jwt: Self.jwtSection(keys: keys.configEntries), routes: routes)
                .replacingOccurrences(
                    of: #"{ "workers": 1,"#,
                    with: #"{ "workers": 1, "redis": { "url": "\#(redis.url)", "timeout_ms": \#(TestTime.ms(500)), "pool_size": 2 }, "rate_limiting": { "store": "redis", "on_store_error": "deny" },"#)
            try await withGateway(config) { gateway in
                try await gateway.waitForRedis()
                func statuses(_ headers: [(String, String)], count: Int) async throws -> [Int] {
                    var statuses: [Int] = []
                    for _ in 0..<count { statuses.append(try await gateway.request("GET", "/x", headers: headers).status) }
                    return statuses
                }
                let gold = [("Authorization", "Bearer \(keys.factories[0].token(claims: Self.claims(["sub": "u-gold", "plan": "gold"])))")]
                let free = [("Authorization", "Bearer \(keys.factories[0].token(claims: Self.claims(["sub": "u-free", "plan": "free"])))")]
                let goldStatuses = try await statuses(gold, count: 5)
                let freeStatuses = try await statuses(free, count: 3)
                let readerStatuses = try await statuses([("X-API-Key", Self.readOnlyKey)], count: 3)
                let serviceStatuses = try await statuses([("X-API-Key", Self.apiKey)], count: 6)
                #expect(goldStatuses == [200, 200, 200, 200, 429], "the gold plan's 4 an hour")
                #expect(freeStatuses == [200, 200, 429], "the limit's own 2 an hour")
                #expect(readerStatuses == [200, 200, 429])
                #expect(serviceStatuses == [200, 200, 200, 200, 200, 200], "exempt")

                let goldRefused = try await gateway.request("GET", "/x", headers: gold)
                #expect(goldRefused.header("x-ratelimit-limit") == "4")
                #expect(goldRefused.header("ratelimit-policy") == #""hourly";q=4;w=3600"#)
                let freeRefused = try await gateway.request("GET", "/x", headers: free)
                #expect(freeRefused.header("x-ratelimit-limit") == "2")
                let exempt = try await gateway.request("GET", "/x", headers: [("X-API-Key", Self.apiKey)])
                #expect(exempt.status == 200 && exempt.header("x-ratelimit-limit") == nil && exempt.header("ratelimit-policy") == nil)
                // The counters are Redis's: one window per counted consumer (the exempt one has none).
                let stored = try await redis.command(["KEYS", "gw:rl:*"])
                #expect(stored.contains("consumer:u-gold") && stored.contains("consumer:u-free") && stored.contains("consumer:reader"))
                #expect(!stored.contains("billing-svc"))
            }
        }
    }

    // Rotating a consumer's API key: the new key and the old one both work for the same consumer until the old
    // one's expires_at; from then on it is refused (401, logged and counted as an expired key).
    @Test func apiKeyRotationAndExpiry() async throws {
        let keys = try await Self.makeKeys()
        let oldKey = "gw_old-key-of-billing"
        let expiry = Date().addingTimeInterval(2)
        let formatter = ISO8601DateFormatter()
        let rotating = #"{ "id": "billing-svc", "sha256": "\#(APIKeyDigest.hex(oldKey))", "scopes": ["orders:read"], "expires_at": "\#(formatter.string(from: expiry))" }"#
        try await withUpstreams { upstreams in
            let config = Self.config(upstreamPort: upstreams[0].port, jwt: Self.jwtSection(keys: keys.configEntries))
                .replacingOccurrences(of: #""api_keys": ["#, with: #""api_keys": [\#(rotating), "#)
            #expect(config.contains(APIKeyDigest.hex(oldKey)), "the rotating key is in the config")
            try await withGateway(config) { gateway in
                let old = try await gateway.request("GET", "/orders/1", headers: [("X-API-Key", oldKey)])
                let new = try await gateway.request("GET", "/orders/1", headers: [("X-API-Key", Self.apiKey)])
                #expect(old.status == 200 && old.echoedHeaders["x-auth-subject"] == "billing-svc")
                #expect(new.status == 200 && new.echoedHeaders["x-auth-subject"] == "billing-svc")

                // Whole seconds: the expiry is the second after `expiry`'s at the latest.
                try await Task.sleep(until: .now + .seconds(expiry.timeIntervalSinceNow + 1.1), clock: .continuous)
                let expired = try await gateway.request("GET", "/orders/1", headers: [("X-API-Key", oldKey)])
                let stillNew = try await gateway.request("GET", "/orders/1", headers: [("X-API-Key", Self.apiKey)])
                #expect(expired.status == 401 && expired.errorCode == "UNAUTHENTICATED")
                #expect(stillNew.status == 200)
                let reasons = gateway.logs.entries("authentication failed").map { $0["reason"] as? String ?? "" }
                #expect(reasons == ["api_key: the key of billing-svc has expired"])
                #expect(gateway.gateway.prometheusText().contains(#"reason="expired_api_key""#))
            }
        }
    }

    // auth.upstream_token (RS256): the upstream gets a JWT naming the consumer that openssl verifies with the
    // gateway's public key alone; a client-sent token field never passes, on any route.
    @Test func upstreamTokenVerifiesWithThePublicKey() async throws {
        let keys = try await Self.makeKeys()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("upstream-token-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let made = try await shell(
            "cd \(directory.path) && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out key.pem 2>/dev/null && openssl pkey -in key.pem -pubout -out public.pem")
        #expect(made.status == 0)
        try await withUpstreams { upstreams in
            let signing = #""upstream_token": { "issuer": "https://gw.test", "alg": "RS256", "kid": "rsa-1", "private_key_file": "\#(directory.path)/key.pem", "audience": "orders" },"#
            let config = Self.config(upstreamPort: upstreams[0].port, jwt: Self.jwtSection(keys: keys.configEntries))
                .replacingOccurrences(of: #""api_keys": ["#, with: signing + #" "api_keys": ["#)
            try await withGateway(config) { gateway in
                let response = try await gateway.request("GET", "/orders/1", headers: [("X-API-Key", Self.apiKey), ("X-Auth-Token", "forged")])
                #expect(response.status == 200)
                let token = try #require(response.echoedHeaders["x-auth-token"])
                let pieces = token.split(separator: ".").map(String.init)
                try #require(pieces.count == 3)
                func bytes(_ text: String) throws -> Data {
                    var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
                    while base64.count % 4 != 0 { base64 += "=" }
                    return try #require(Data(base64Encoded: base64))
                }
                try Data((pieces[0] + "." + pieces[1]).utf8).write(to: directory.appendingPathComponent("input"))
                try bytes(pieces[2]).write(to: directory.appendingPathComponent("signature"))
                let verified = try await shell("cd \(directory.path) && openssl dgst -sha256 -verify public.pem -signature signature input")
                #expect(verified.stdout.contains("Verified OK"), "\(verified.stdout)")
                // The key set the gateway would publish (direct_response jwks) verifies it too, through a JWT library.
                let keySet = try #require(gateway.gateway.authenticator?.upstreamTokens?.keySet)
                let collection = JWTKeyCollection()
                try await collection.add(jwksJSON: keySet)
                let algorithm = try await collection.getKey(for: JWKIdentifier(string: "rsa-1"), alg: "RS256")
                let viaKeySet = try algorithm.verify(try bytes(pieces[2]), signs: Array((pieces[0] + "." + pieces[1]).utf8))
                #expect(viaKeySet)
                let payload = try #require(try JSONSerialization.jsonObject(with: bytes(pieces[1])) as? [String: Any])
                #expect(payload["sub"] as? String == "billing-svc" && payload["auth_method"] as? String == "api_key" && payload["aud"] as? String == "orders")
                #expect(payload["scope"] as? String == "orders:read orders:write" && payload["iss"] as? String == "https://gw.test")

                let open = try await gateway.request("GET", "/public", headers: [("X-Auth-Token", "forged")])
                #expect(open.status == 200 && open.echoedHeaders["x-auth-token"] == nil)
            }
        }
    }

    // direct_response {"jwks": "upstream_token"}: the gateway publishes its ES256 public key as a JWK Set, and a
    // JWT library given only that key set verifies the token the upstream received.
    @Test func upstreamTokenKeySetIsPublished() async throws {
        let keys = try await Self.makeKeys()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("upstream-jwks-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let made = try await shell("cd \(directory.path) && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out key.pem 2>/dev/null")
        #expect(made.status == 0)
        try await withUpstreams { upstreams in
            let signing = #""upstream_token": { "issuer": "https://gw.test", "alg": "ES256", "kid": "gw-1", "private_key_file": "\#(directory.path)/key.pem" },"#
            let routes = #"""
                [{ "name": "keys", "match": { "path": "/.well-known/gateway-jwks.json" }, "direct_response": { "jwks": "upstream_token" } },
                 { "name": "orders", "match": { "path_prefix": "/orders" }, "upstream": "demo", "auth": { "require": ["api_key"] } }]
                """#
            let config = Self.config(upstreamPort: upstreams[0].port, jwt: Self.jwtSection(keys: keys.configEntries), routes: routes)
                .replacingOccurrences(of: #""api_keys": ["#, with: signing + #" "api_keys": ["#)
            try await withGateway(config) { gateway in
                let published = try await gateway.request("GET", "/.well-known/gateway-jwks.json")
                #expect(published.status == 200 && published.header("content-type") == "application/jwk-set+json")
                let entry = try #require((published.json["keys"] as? [[String: Any]])?.first)
                #expect(entry["kty"] as? String == "EC" && entry["kid"] as? String == "gw-1" && entry["alg"] as? String == "ES256" && entry["d"] == nil)

                let answered = try await gateway.request("GET", "/orders/1", headers: [("X-API-Key", Self.apiKey)])
                let token = try #require(answered.echoedHeaders["x-auth-token"])
                let pieces = token.split(separator: ".").map(String.init)
                try #require(pieces.count == 3)
                let collection = JWTKeyCollection()
                try await collection.add(jwksJSON: published.text)
                let algorithm = try await collection.getKey(for: JWKIdentifier(string: "gw-1"), alg: "ES256")
                var signature = pieces[2].replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
                while signature.count % 4 != 0 { signature += "=" }
                let signatureBytes = try #require(Data(base64Encoded: signature))
                let verified = try algorithm.verify(signatureBytes, signs: Array((pieces[0] + "." + pieces[1]).utf8))
                #expect(verified)
            }
        }
    }

    // concurrency_limit.overrides: one slow request at a time for most consumers, three for the billing service.
    @Test(.timeLimit(.minutes(1))) func concurrencyOverridesPerConsumer() async throws {
        let keys = try await Self.makeKeys()
        try await withUpstreams { upstreams in
            let routes = #"""
                [{ "name": "slow", "upstream": "demo", "auth": { "require": ["api_key"] },
                   "concurrency_limit": { "key": "consumer", "max": 1,
                                          "overrides": [{ "consumers": ["billing-svc"], "max": 3 }] } }]
                """#
            let config = Self.config(upstreamPort: upstreams[0].port, jwt: Self.jwtSection(keys: keys.configEntries), routes: routes)
            try await withGateway(config) { gateway in
                func burst(_ key: String) async throws -> [Int] {
                    try await withThrowingTaskGroup(of: Int.self) { group in
                        for index in 0..<4 {
                            group.addTask {
                                // The last starts once the others are surely running.
                                if index == 3 { try await Task.sleep(for: TestTime.duration(ms: 300)) }
                                let ms = index == 3 ? 0 : TestTime.ms(1200)
                                return try await gateway.request("GET", "/slow?ms=\(ms)", headers: [("X-API-Key", key)]).status
                            }
                        }
                        return try await group.reduce(into: [Int]()) { $0.append($1) }.sorted()
                    }
                }
                let reader = try await burst(Self.readOnlyKey)
                #expect(reader == [200, 429, 429, 429], "one at a time")
                let billing = try await burst(Self.apiKey)
                #expect(billing == [200, 200, 200, 429], "three at a time")
            }
        }
    }

    // forward_claims headers are the gateway's: one a client sends is removed on every route before anything reads
    // it (a per-tenant limit keyed on it, the upstream), and only the verified claim goes up.
    @Test func forwardedClaimsCannotBeForged() async throws {
        let keys = try await Self.makeKeys()
        try await withUpstreams { upstreams in
            let jwt = Self.jwtSection(keys: keys.configEntries, extra: #", "forward_claims": { "tenant": "X-Tenant" }"#)
            let routes = #"""
                [{ "name": "orders", "match": { "path_prefix": "/orders" }, "upstream": "demo", "auth": { "require": ["jwt"] },
                   "rate_limits": [{ "name": "per-tenant", "algorithm": "sliding_window", "key": "header:x-tenant", "limit": 2, "window_seconds": 60 }] },
                 { "name": "public", "upstream": "demo" }]
                """#
            try await withGateway(Self.config(upstreamPort: upstreams[0].port, jwt: jwt, routes: routes)) { gateway in
                let token = keys.factories[0].token(claims: Self.claims(["tenant": "acme"]))
                var statuses: [Int] = []
                for forged in ["other-1", "other-2", "other-3"] {
                    let response = try await gateway.request("GET", "/orders/1", headers: [("Authorization", "Bearer \(token)"), ("X-Tenant", forged)])
                    statuses.append(response.status)
                    if response.status == 200 { #expect(response.echoedHeaders["x-tenant"] == "acme") }
                }
                #expect(statuses == [200, 200, 429], "the limit counts the verified tenant, whatever the client sends")
                let open = try await gateway.request("GET", "/public", headers: [("X-Tenant", "acme")])
                #expect(open.echoedHeaders["x-tenant"] == nil)
            }
        }
    }

    // auth.jwt.query_param: a browser's WebSocket or EventSource request may carry its token in the URL; the
    // token is checked like a header's and never reaches the upstream (the other parameters do, in order).
    @Test func tokenInTheQuery() async throws {
        let keys = try await Self.makeKeys()
        try await withUpstreams { upstreams in
            let jwt = Self.jwtSection(keys: keys.configEntries, extra: #", "query_param": "access_token""#)
            try await withGateway(Self.config(upstreamPort: upstreams[0].port, jwt: jwt)) { gateway in
                let token = keys.factories[0].token(claims: Self.claims())
                let response = try await gateway.request("GET", "/orders/1?page=2&access_token=\(token)&sort=asc")
                #expect(response.status == 200)
                #expect(response.echoedHeaders["x-auth-subject"] == "user-42")
                #expect(response.json["uri"] as? String == "/orders/1?page=2&sort=asc")
                let only = try await gateway.request("GET", "/orders/1?access_token=\(token)")
                #expect(only.json["uri"] as? String == "/orders/1")
                let forged = try await gateway.request("GET", "/orders/1?access_token=not.a.token")
                #expect(forged.status == 401)
                #expect(upstreams[0].requestsServed == 2)
            }
        }
    }

    // auth.api_key_header and auth.api_key_query_param: keys in the field an API has always used, or in the URL for
    // clients that cannot set one (a third party's callback); neither goes upstream, X-API-Key is no longer looked at,
    // and the key never reaches the log.
    @Test func apiKeysInAnotherFieldOrTheQuery() async throws {
        let keys = try await Self.makeKeys()
        try await withUpstreams { upstreams in
            let config = Self.config(upstreamPort: upstreams[0].port, jwt: Self.jwtSection(keys: keys.configEntries)).replacingOccurrences(
                of: "\"auth\": {\n", with: #""auth": { "api_key_header": "Api-Key", "api_key_query_param": "api_key","# + "\n")
            try await withGateway(config) { gateway in
                let byField = try await gateway.request("GET", "/orders/1", headers: [("Api-Key", Self.apiKey)])
                #expect(byField.status == 200 && byField.echoedHeaders["x-auth-subject"] == "billing-svc")
                #expect(byField.echoedHeaders["api-key"] == nil)
                let byQuery = try await gateway.request("GET", "/orders/1?page=2&api_key=\(Self.readOnlyKey)")
                #expect(byQuery.status == 200 && byQuery.echoedHeaders["x-auth-subject"] == "reader")
                #expect(byQuery.json["uri"] as? String == "/orders/1?page=2")
                let byAuthorization = try await gateway.request("GET", "/orders/1", headers: [("Authorization", "ApiKey \(Self.apiKey)")])
                #expect(byAuthorization.status == 200)
                let oldField = try await gateway.request("GET", "/orders/1", headers: [("X-API-Key", Self.apiKey)])
                #expect(oldField.status == 401)
                let wrong = try await gateway.request("GET", "/orders/1?api_key=gw_not-a-key")
                #expect(wrong.status == 401 && wrong.errorCode == "UNAUTHENTICATED")
                #expect(upstreams[0].requestsServed == 3)
                let logText = gateway.logs.all.joined(separator: "\n")
                #expect(!logText.contains(Self.apiKey) && !logText.contains(Self.readOnlyKey) && !logText.contains("gw_not-a-key"))
            }
        }
        // The field is a credential: the access log cannot name it; fields with a meaning of their own cannot be it.
        let plain = Self.config(upstreamPort: 9, jwt: Self.jwtSection(keys: keys.configEntries))
        let logged = ConfigLoader.load(
            text: plain.replacingOccurrences(of: "\"auth\": {\n", with: #""logging": { "access_log_headers": ["Api-Key"] }, "auth": { "api_key_header": "Api-Key","# + "\n"), environment: [:])
        #expect(logged.errors.map(\.description) == ["logging.access_log_headers[0]: api-key carries API keys (auth.api_key_header) and is never logged"])
        let reserved = ConfigLoader.load(
            text: plain.replacingOccurrences(of: "\"auth\": {\n", with: #""auth": { "api_key_header": "Authorization","# + "\n"), environment: [:])
        #expect(reserved.errors.map(\.description) == ["auth.api_key_header: authorization has a meaning of its own; name a field of your own (X-API-Key, Api-Key)"])
    }

    // A token the gateway verified (and cached) still stops working the second its exp passes: the cache
    // checks the time claims on every hit. Leeway 0; the token lives about two seconds.
    @Test func cachedTokenExpiresOnTime() async throws {
        let keys = try await Self.makeKeys()
        let jwt = #"{ "issuer": "https://id.test/", "audiences": ["orders-api"], "leeway_seconds": 0, "keys": [\#(keys.configEntries[0])] }"#
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(upstreamPort: upstreams[0].port, jwt: jwt)) { gateway in
                let expiry = Int(Date().timeIntervalSince1970) + 2
                let token = keys.factories[0].token(claims: Self.claims(["exp": expiry]))
                for _ in 0..<3 {
                    let response = try await gateway.request("GET", "/orders/1", headers: [("Authorization", "Bearer \(token)")])
                    #expect(response.status == 200)
                }
                while Int(Date().timeIntervalSince1970) < expiry { try await Task.sleep(for: .milliseconds(100)) }
                let late = try await gateway.request("GET", "/orders/1", headers: [("Authorization", "Bearer \(token)")])
                #expect(late.status == 401)
            }
        }
    }

    // JWKS from a URL: a token with a new kid is accepted after the gateway refetches (no restart); when the
    // JWKS server is gone the keys it served keep working.
    @Test func jwksRotationAndOutage() async throws {
        let first = try EdDSA.PrivateKey(curve: .ed25519)
        let second = try EdDSA.PrivateKey(curve: .ed25519)
        let one = try await TokenFactory.make(alg: "EdDSA", kid: "k1") { await $0.add(eddsa: first, kid: $1) }
        let two = try await TokenFactory.make(alg: "EdDSA", kid: "k2") { await $0.add(eddsa: second, kid: $1) }
        func jwk(_ key: EdDSA.PrivateKey, kid: String) -> String {
            #"{ "kty": "OKP", "crv": "Ed25519", "use": "sig", "kid": "\#(kid)", "x": "\#(TokenFactory.base64URL(key.publicKey.rawRepresentation))" }"#
        }
        let jwksServer = try await DemoUpstream.start(name: "idp")
        jwksServer.behaviour.documents.withLockedValue { $0["/jwks.json"] = #"{ "keys": [\#(jwk(first, kid: "k1")), { "kty": "EC", "use": "enc", "kid": "e1" }] }"# }
        try await withUpstreams { upstreams in
            let jwt = #"{ "issuer": "https://id.test/", "audiences": ["orders-api"], "jwks_url": "http://127.0.0.1:\#(jwksServer.port)/jwks.json", "jwks_min_refetch_seconds": 1 }"#
            try await withGateway(Self.config(upstreamPort: upstreams[0].port, jwt: jwt)) { gateway in
                let firstToken = try await gateway.request("GET", "/orders/1", headers: [("Authorization", "Bearer \(one.token(claims: Self.claims()))")])
                #expect(firstToken.status == 200)
                let unknown = try await gateway.request("GET", "/orders/1", headers: [("Authorization", "Bearer \(two.token(claims: Self.claims()))")])
                #expect(unknown.status == 401, "k2 is not published yet")

                jwksServer.behaviour.documents.withLockedValue { $0["/jwks.json"] = #"{ "keys": [\#(jwk(first, kid: "k1")), \#(jwk(second, kid: "k2"))] }"# }
                try await Task.sleep(for: .milliseconds(1100))  // past jwks_min_refetch_seconds
                let rotated = try await gateway.request("GET", "/orders/1", headers: [("Authorization", "Bearer \(two.token(claims: Self.claims()))")])
                #expect(rotated.status == 200, "a new kid triggers a refetch")

                await jwksServer.shutdown()
                try await Task.sleep(for: .milliseconds(1100))
                let stale = try await gateway.request("GET", "/orders/1", headers: [("Authorization", "Bearer \(one.token(claims: Self.claims(), kid: "k9"))")])
                #expect(stale.status == 401, "an unknown kid while the JWKS server is down")
                let kept = try await gateway.request("GET", "/orders/1", headers: [("Authorization", "Bearer \(two.token(claims: Self.claims()))")])
                #expect(kept.status == 200, "the last good keys keep working")
                #expect(gateway.logs.entries("JWKS fetch failed; keeping the last good keys").count >= 1)
                #expect(gateway.logs.entries("JWKS key skipped").count == 1, "the encryption key")
            }
        }
    }

    // `gateway check` loads the JWT keys: a missing key file and a key that does not parse are errors.
    @Test func checkLoadsKeys() async throws {
        let pki = try TestPKI()
        let file = pki.path("gateway.json")
        let json = #"""
            { "listeners": [{ "name": "l", "port": 1 }],
              "auth": { "jwt": { "keys": [ { "kid": "a", "alg": "RS256", "public_key_file": "missing.pem" },
                                           { "kid": "b", "alg": "ES256", "public_key": "-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----" } ] } },
              "upstreams": { "u": { "targets": ["http://127.0.0.1:9"] } },
              "routes": [{ "name": "r", "upstream": "u", "auth": { "require": ["jwt"] } }] }
            """#
        try json.write(toFile: file, atomically: true, encoding: .utf8)
        let result = try await runCommand(Binaries.gateway, ["check", "--config", file])
        #expect(result.status == 1)
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first == "auth.jwt.keys[0].public_key_file: \(pki.path("missing.pem")) cannot be read", "\(lines)")
        #expect(lines.count == 2 && lines[1].hasPrefix("auth.jwt.keys[1]: cannot be used as an ES256 key"), "\(lines)")
    }

    // `gateway check` reads the htpasswd file (relative to the config): an MD5 line is an error with its line.
    @Test func checkReadsHtpasswd() async throws {
        let pki = try TestPKI()
        let file = pki.path("gateway.json")
        try "ops:$apr1$saltsalt$Q17bmANhIA7pctgRGqF/S0\n".write(toFile: pki.path("htpasswd"), atomically: true, encoding: .utf8)
        let json = #"""
            { "listeners": [{ "name": "l", "address": "127.0.0.1", "port": 1 }],
              "auth": { "basic": { "htpasswd_file": "htpasswd" } },
              "upstreams": { "u": { "targets": ["http://127.0.0.1:9"] } },
              "routes": [{ "name": "r", "upstream": "u", "auth": { "require": ["basic"] } }] }
            """#
        try json.write(toFile: file, atomically: true, encoding: .utf8)
        let result = try await runCommand(Binaries.gateway, ["check", "--config", file])
        #expect(result.status == 1)
        #expect(result.stdout.hasPrefix("auth.basic.htpasswd_file: \(pki.path("htpasswd")) line 1 (ops): expected a bcrypt"), "\(result.stdout)")
        try "ops:$2y$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e\n".write(toFile: pki.path("htpasswd"), atomically: true, encoding: .utf8)
        let fixed = try await runCommand(Binaries.gateway, ["check", "--config", file])
        #expect(fixed.status == 0 && fixed.stdout.contains("ok"), "\(fixed.stdout)")
    }

    // webhook_signature: a delivery reaches the upstream only with a valid signature of its whole body (chunked too),
    // held before the upstream is called; forged, stale and oversized ones are refused there, counted and logged.
    @Test func webhookSignatures() async throws {
        let secret = "github-webhook-secret-0123"
        let routes = #"""
            [{ "name": "github", "match": { "path": "/hooks/github" }, "upstream": "demo",
               "webhook_signature": { "scheme": "github", "secrets": ["\#(secret)"], "max_body_bytes": 1000 } },
             { "name": "stripe", "match": { "path": "/hooks/stripe" }, "upstream": "demo",
               "webhook_signature": { "scheme": "stripe", "secrets": ["whsec_stripe_secret_0123"] } }]
            """#
        func sign(_ text: String, _ key: String) -> String {
            HMAC<SHA256>.authenticationCode(for: Array(text.utf8), using: SymmetricKey(data: Array(key.utf8))).map { String(format: "%02x", $0) }.joined()
        }
        let payload = #"{"action":"opened","number":7}"#
        try await withUpstreams { upstreams in
            let json = basicConfig(routes: routes, top: #""admin": { "address": "127.0.0.1", "port": 0 },"#)
                .replacingOccurrences(of: #""port": 0 }]"#, with: #""port": 0, "h2c": true }]"#)
            try await withGateway(json, upstreams: upstreams) { gateway in
                let signed = try await gateway.request(
                    "POST", "/hooks/github", headers: [("X-Hub-Signature-256", "sha256=" + sign(payload, secret)), ("Content-Type", "application/json")],
                    body: payload)
                #expect(signed.status == 200 && signed.json["body"] as? String == payload)

                let forged = try await gateway.request("POST", "/hooks/github", headers: [("X-Hub-Signature-256", "sha256=" + sign(payload, "guess"))], body: payload)
                #expect(forged.status == 403 && forged.errorCode == "INVALID_SIGNATURE")
                let unsigned = try await gateway.request("POST", "/hooks/github", body: payload)
                #expect(unsigned.errorCode == "INVALID_SIGNATURE")
                #expect(upstreams[0].requestsServed == 1, "refused deliveries never reach the upstream")

                // A chunked delivery is held whole, checked, then sent up with a length.
                let client = try await gateway.connect()
                let first = String(payload.prefix(10))
                let rest = String(payload.dropFirst(10))
                try await client.send(
                    "POST /hooks/github HTTP/1.1\r\nHost: t\r\nX-Hub-Signature-256: sha256=\(sign(payload, secret))\r\nTransfer-Encoding: chunked\r\n\r\n"
                        + String(first.utf8.count, radix: 16) + "\r\n" + first + "\r\n")
                try await Task.sleep(for: TestTime.duration(ms: 200))
                #expect(upstreams[0].requestsServed == 1, "nothing goes up before the body is whole")
                try await client.send(String(rest.utf8.count, radix: 16) + "\r\n" + rest + "\r\n0\r\n\r\n")
                let chunked = try await client.readResponse()
                #expect(chunked.status == 200 && chunked.json["body"] as? String == payload)
                #expect(chunked.echoedHeaders["content-length"] == String(payload.utf8.count))
                await client.close()

                let large = String(repeating: "x", count: 1001)
                let tooLarge = try await gateway.request("POST", "/hooks/github", headers: [("X-Hub-Signature-256", "sha256=" + sign(large, secret))], body: large)
                #expect(tooLarge.status == 413)

                // HTTP/2 streams too.
                let h2 = try await H2Client.connect(port: gateway.port)
                let overH2 = try await h2.request("POST", "/hooks/github", headers: [("x-hub-signature-256", "sha256=" + sign(payload, secret))], body: Array(payload.utf8))
                let forgedH2 = try await h2.request("POST", "/hooks/github", headers: [("x-hub-signature-256", "sha256=" + sign(payload, "guess"))], body: Array(payload.utf8))
                await h2.close()
                #expect(overH2.status == 200 && String(decoding: overH2.bytes, as: UTF8.self).contains("opened"))
                #expect(forgedH2.status == 403)

                // Stripe signs the time too: a delivery signed ten minutes ago is a replay.
                let now = Int(Date().timeIntervalSince1970)
                let fresh = try await gateway.request(
                    "POST", "/hooks/stripe", headers: [("Stripe-Signature", "t=\(now),v1=" + sign("\(now).\(payload)", "whsec_stripe_secret_0123"))], body: payload)
                #expect(fresh.status == 200)
                // The same delivery again (replay_protection, on by default for schemes that sign a time), here in memory.
                let again = try await gateway.request(
                    "POST", "/hooks/stripe", headers: [("Stripe-Signature", "t=\(now),v1=" + sign("\(now).\(payload)", "whsec_stripe_secret_0123"))], body: payload)
                #expect(again.status == 403 && again.errorCode == "INVALID_SIGNATURE")
                let retried = try await gateway.request(
                    "POST", "/hooks/stripe", headers: [("Stripe-Signature", "t=\(now + 1),v1=" + sign("\(now + 1).\(payload)", "whsec_stripe_secret_0123"))],
                    body: payload)
                #expect(retried.status == 200, "the sender's retry is signed at a new time")
                let old = now - 600
                let replayed = try await gateway.request(
                    "POST", "/hooks/stripe", headers: [("Stripe-Signature", "t=\(old),v1=" + sign("\(old).\(payload)", "whsec_stripe_secret_0123"))], body: payload)
                #expect(replayed.errorCode == "INVALID_SIGNATURE")

                let reasons = gateway.logs.entries("webhook signature refused").compactMap { $0["reason"] as? String }
                #expect(reasons == [
                    "no signature matches the body under the route's secrets", "no x-hub-signature-256 field",
                    "no signature matches the body under the route's secrets", "this delivery was accepted before (a replay)",
                    "the signed time is more than 300 s from the gateway's clock",
                ])
                let metrics = PrometheusText(try await OperationsTests.admin(gateway.gateway, "/metrics", token: nil).text)
                #expect(metrics.value("gateway_auth_failures_total", ["route": "github", "reason": "invalid_signature"]) == 3)
                #expect(metrics.value("gateway_auth_failures_total", ["route": "stripe", "reason": "invalid_signature"]) == 1)
                #expect(metrics.value("gateway_auth_failures_total", ["route": "stripe", "reason": "replayed_delivery"]) == 1)
            }
        }
    }

    // webhook_signature.replay_protection over a real Redis: a delivery one gateway accepted is refused by another that
    // shares the Redis, also when presented with one of its two signatures dropped (the signed content is what is
    // remembered, for the tolerance window and a minute); the sender's retry, signed at a new time, passes. With Redis
    // gone, deliveries get 503 (senders retry those) instead of passing unchecked.
    @Test func webhookReplaysAcrossInstances() async throws {
        let redis = try await RedisServer()
        let (current, next) = ("whsec_stripe_secret_0123", "whsec_stripe_secret_next")
        let routes = #"[{ "name": "stripe", "upstream": "demo", "webhook_signature": { "scheme": "stripe", "secrets": ["\#(current)", "\#(next)"] } }]"#
        let top = #""redis": { "url": "\#(redis.url)", "timeout_ms": \#(TestTime.ms(500)), "pool_size": 2 },"#
        func sign(_ text: String, _ key: String) -> String {
            HMAC<SHA256>.authenticationCode(for: Array(text.utf8), using: SymmetricKey(data: Array(key.utf8))).map { String(format: "%02x", $0) }.joined()
        }
        let payload = #"{"id":"evt_1","type":"invoice.paid"}"#
        let now = Int(Date().timeIntervalSince1970)
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: routes, top: top), upstreams: upstreams) { first in
                try await withGateway(basicConfig(routes: routes, top: top), upstreams: upstreams) { second in
                    try await first.waitForRedis()
                    try await second.waitForRedis()
                    func deliver(to gateway: TestGateway, at time: Int, signatures: [String]) async throws -> TestResponse {
                        let header = "t=\(time)," + signatures.map { "v1=" + sign("\(time).\(payload)", $0) }.joined(separator: ",")
                        return try await gateway.request("POST", "/hooks", headers: [("Stripe-Signature", header)], body: payload)
                    }
                    let accepted = try await deliver(to: first, at: now, signatures: [current, next])
                    let replayed = try await deliver(to: second, at: now, signatures: [current, next])
                    let trimmed = try await deliver(to: second, at: now, signatures: [next])
                    let retried = try await deliver(to: second, at: now + 1, signatures: [current])
                    #expect(accepted.status == 200 && retried.status == 200)
                    #expect(replayed.status == 403 && replayed.errorCode == "INVALID_SIGNATURE")
                    #expect(trimmed.status == 403 && trimmed.errorCode == "INVALID_SIGNATURE")
                    #expect(upstreams[0].requestsServed == 2)
                    let key = Base64URL.encode(SHA256.hash(data: Array("\(now).\(payload)".utf8)))
                    let ttl = Int(try await redis.command(["TTL", "gw:replay:" + key]).trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
                    #expect(ttl > 300 && ttl <= 361, "until the signed time leaves the 300 s window, and a minute: \(ttl)")

                    redis.kill()
                    let unchecked = try await deliver(to: first, at: now + 2, signatures: [current])
                    #expect(unchecked.status == 503 && unchecked.errorCode == "AUTH_UNAVAILABLE")
                    #expect(upstreams[0].requestsServed == 2)
                    #expect(first.logs.entries("webhook replay check failed").count == 1)
                }
            }
        }
    }

    // `gateway hash-key` prints the digest auth.api_keys wants; --generate makes a key that hashes to what it prints.
    @Test func hashKeyCommand() async throws {
        let hashed = try await shell("printf %s '\(Self.apiKey)' | \(Binaries.gateway.path) hash-key")
        #expect(hashed.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == APIKeyDigest.hex(Self.apiKey))
        let generated = try await shell("\(Binaries.gateway.path) hash-key --generate")
        let lines = generated.stdout.split(separator: "\n").map { $0.split(separator: " ").last.map(String.init) ?? "" }
        #expect(lines.count == 2)
        #expect(lines.first?.hasPrefix("gw_") == true)
        #expect(lines.count == 2 && APIKeyDigest.hex(lines[0]) == lines[1])
    }

    // `gateway hash-password` prints an htpasswd line whose bcrypt hash another crypt(3) caller (Python) accepts.
    @Test func hashPasswordCommand() async throws {
        let made = try await shell("printf %s 'correct horse' | \(Binaries.gateway.path) hash-password --cost 4 --user ops")
        let line = made.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(line.hasPrefix("ops:$2b$04$") && line.count == 64, "\(line)")
        let hash = String(line.dropFirst(4))
        let check = try await shell(#"python3 -W ignore -c 'import crypt, sys; print(crypt.crypt(sys.argv[1], sys.argv[2]) == sys.argv[2])' 'correct horse' '\#(hash)'"#)
        #expect(check.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "True")
        let refused = try await shell("printf '' | \(Binaries.gateway.path) hash-password")
        #expect(refused.status != 0 && refused.stderr.contains("expected the password on stdin"))
    }
}

/// SHA-256 hex via the shell's sha256sum (independent of the gateway's own code).
enum APIKeyDigest {
    static func hex(_ key: String) -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try! process.run()
        input.fileHandleForWriting.write(Data(key.utf8))
        try! input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self).split(separator: " ").first.map(String.init) ?? ""
    }
}

func shellSync(_ command: String) throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", command]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    struct Failed: Error {}
    guard process.terminationStatus == 0 else { throw Failed() }
}
