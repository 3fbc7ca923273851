import Foundation
import NIOConcurrencyHelpers
import Testing
import TestSupport

/// `upstreams.<name>.oauth2`: the gateway gets its own token for an upstream (the client-credentials grant, at a real
/// token endpoint on 127.0.0.1) and sends it instead of whatever the client authenticated with.
@Suite struct UpstreamTokenTests {
    // The token goes upstream in place of the client's Authorization, renewed before it ends (80% of expires_in); when
    // the endpoint fails, the current token serves until it ends, then calls get 503 until the endpoint answers again.
    @Test(.timeLimit(.minutes(1))) func clientCredentialsToken() async throws {
        try await withUpstreams(2) { upstreams in
            let (api, idp) = (upstreams[0], upstreams[1])
            let issued = NIOLockedValueBox(0)
            let failing = NIOLockedValueBox(false)
            let lifetime = TestTime.ms(2000) / 1000
            idp.behaviour.tokenEndpoint.withLockedValue {
                $0 = { form in
                    guard !failing.withLockedValue({ $0 }) else { return (500, #"{"error":"server_error"}"#) }
                    guard form["grant_type"] == "client_credentials", form["scope"] == "orders:read orders:write", form["audience"] == "orders"
                    else { return (400, #"{"error":"invalid_request"}"#) }
                    let count = issued.withLockedValue { count in
                        count += 1
                        return count
                    }
                    return (200, #"{"access_token":"tok-\#(count)","token_type":"Bearer","expires_in":\#(lifetime)}"#)
                }
            }
            let config = """
                { "workers": 1, "admin": { "address": "127.0.0.1", "port": 0 }, "listeners": [{ "name": "test", "address": "127.0.0.1", "port": 0 }],
                  "upstreams": { "orders": { "targets": ["http://127.0.0.1:\(api.port)"],
                                             "oauth2": { "token_url": "http://127.0.0.1:\(idp.port)/token", "client_id": "gateway", "client_secret": "s3cret",
                                                         "scopes": ["orders:read", "orders:write"], "audience": "orders" } } },
                  "routes": [{ "name": "all", "upstream": "orders" }] }
                """
            try await withGateway(config) { gateway in
                func sent() async throws -> (status: Int, authorization: String?) {
                    let response = try await gateway.request("GET", "/echo", headers: [("Authorization", "Bearer the-clients-own")])
                    return (response.status, response.echoedHeaders["authorization"])
                }
                let first = try await sent()
                #expect(first.status == 200 && first.authorization == "Bearer tok-1", "the first token is there before the first request")
                // Each wait lasts up to two token lifetimes (scaled with TestTime, as the lifetime is): a count of polls
                // would not, and under a sanitizer 200 polls ended before the renewal at 80% of the lifetime was due.
                func deadline() -> ContinuousClock.Instant { .now + .seconds(2 * lifetime) }
                var renewed = first
                let renewal = deadline()
                while renewed.authorization == "Bearer tok-1", .now < renewal {
                    try await Task.sleep(for: .milliseconds(25))
                    renewed = try await sent()
                }
                #expect(renewed.authorization == "Bearer tok-2", "renewed before it ends")

                failing.withLockedValue { $0 = true }
                var refused = try await sent()
                let expiry = deadline()
                while refused.status == 200, .now < expiry {
                    try await Task.sleep(for: .milliseconds(25))
                    refused = try await sent()
                }
                #expect(refused.status == 503, "no token once the last one ended")
                #expect(gateway.logs.entries("upstream token request failed").count >= 1)
                let apiCalls = api.requestsServed

                failing.withLockedValue { $0 = false }
                var back = refused
                let recovery = deadline()
                while back.status != 200, .now < recovery {
                    try await Task.sleep(for: .milliseconds(25))
                    back = try await sent()
                }
                #expect(back.status == 200 && back.authorization?.hasPrefix("Bearer tok-") == true)
                let metrics = PrometheusText(try await OperationsTests.admin(gateway.gateway, "/metrics", token: nil).text)
                let counted = metrics.value("gateway_upstream_token_requests_total", ["upstream": "orders", "outcome": "issued"])
                let listed = try await OperationsTests.admin(gateway.gateway, "/upstreams", token: nil).json["tokens"] as? [[String: Any]]
                #expect(listed?.first?["upstream"] as? String == "orders" && listed?.first?["valid"] as? Bool == true, "\(String(describing: listed))")
                let tokensIssued = issued.withLockedValue { $0 }
                #expect(counted == Double(tokensIssued))
                #expect((metrics.value("gateway_upstream_token_requests_total", ["upstream": "orders", "outcome": "failed"]) ?? 0) >= 1)
                #expect(api.requestsServed == apiCalls + 1, "the 503s never reached the upstream")
            }
        }
    }

    // A 401 from the upstream to a call with the gateway's token (revoked early, a rotated key) gets a new one at once,
    // not at the scheduled renewal an hour later; a storm of 401s asks at most once every ten seconds.
    @Test(.timeLimit(.minutes(1))) func refusedTokenIsReplaced() async throws {
        try await withUpstreams(2) { upstreams in
            let (api, idp) = (upstreams[0], upstreams[1])
            let issued = NIOLockedValueBox(0)
            idp.behaviour.tokenEndpoint.withLockedValue {
                $0 = { _ in
                    let count = issued.withLockedValue { count in
                        count += 1
                        return count
                    }
                    return (200, #"{"access_token":"tok-\#(count)","token_type":"bearer","expires_in":3600}"#)
                }
            }
            let config = """
                { "workers": 1, "listeners": [{ "name": "test", "address": "127.0.0.1", "port": 0 }],
                  "upstreams": { "orders": { "targets": ["http://127.0.0.1:\(api.port)"],
                                             "oauth2": { "token_url": "http://127.0.0.1:\(idp.port)/token", "client_id": "gateway", "client_secret": "s3cret" } } },
                  "routes": [{ "name": "all", "upstream": "orders" }] }
                """
            try await withGateway(config) { gateway in
                func token() async throws -> String? { try await gateway.request("GET", "/echo").echoedHeaders["authorization"] }
                #expect(try await token() == "Bearer tok-1")
                let refused = try await gateway.request("GET", "/status/401")
                #expect(refused.status == 401, "the upstream's own answer reaches the client")
                var current = try await token()
                for _ in 0..<200 where current == "Bearer tok-1" {
                    try await Task.sleep(for: .milliseconds(25))
                    current = try await token()
                }
                #expect(current == "Bearer tok-2")
                for _ in 0..<5 { _ = try await gateway.request("GET", "/status/401") }
                try await Task.sleep(for: .milliseconds(300))
                let count = issued.withLockedValue { $0 }
                #expect(count == 2, "at most one early renewal every ten seconds")
                #expect(gateway.logs.entries("upstream refused the gateway's token; asking for a new one").count == 1)
            }
        }
    }

    // aws_sigv4 against botocore (AWS's own SDK code) recomputing each signature from what arrived: S3 with a query and
    // a streamed upload (UNSIGNED-PAYLOAD), an execute-api route whose buffered body is hashed into the signature, the
    // client's Authorization and x-amz-* fields gone, and a wrong secret refused as AWS would.
    @Test(.timeLimit(.minutes(1))) func awsSignatureV4() async throws {
        let (keyID, secret) = ("AKIDGATEWAYTEST", "gateway/secret+KEY")
        let s3 = try await AWSVerifier(accessKeyID: keyID, secretAccessKey: secret, sessionToken: "session-1", region: "eu-west-1", service: "s3")
        let api = try await AWSVerifier(accessKeyID: keyID, secretAccessKey: secret, region: "us-east-1", service: "execute-api")
        func config(secret: String) -> String {
            """
            { "workers": 1, "listeners": [{ "name": "public", "address": "127.0.0.1", "port": 0 }],
              "upstreams": {
                "bucket": { "targets": ["http://127.0.0.1:\(s3.port)"],
                            "aws_sigv4": { "region": "eu-west-1", "service": "s3", "access_key_id": "\(keyID)", "secret_access_key": "\(secret)", "session_token": "session-1" } },
                "api": { "targets": ["http://127.0.0.1:\(api.port)"],
                         "aws_sigv4": { "region": "us-east-1", "service": "execute-api", "access_key_id": "\(keyID)", "secret_access_key": "\(secret)" } } },
              "routes": [{ "name": "files", "match": { "path_prefix": "/files" }, "strip_prefix": "/files", "upstream": "bucket" },
                         { "name": "api", "match": { "path_prefix": "/api" }, "upstream": "api", "request_buffering": true }] }
            """
        }
        try await withGateway(config(secret: secret)) { gateway in
            let get = try await gateway.request(
                "GET", "/files/photos/a%20b.jpg?versionId=3&acl",
                headers: [("Authorization", "Bearer client-token"), ("X-Amz-Copy-Source", "other-bucket/secret"), ("X-Amz-Acl", "public-read")])
            #expect(get.status == 200, "\(get.text)")
            #expect(get.json["verified"] as? Bool == true && get.json["host"] as? String == "127.0.0.1:\(s3.port)")
            #expect(get.json["amz"] as? [String] == ["x-amz-content-sha256", "x-amz-date", "x-amz-security-token"], "the client's x-amz-* fields are gone")
            let upload = String(repeating: "0123456789", count: 10_000)
            let put = try await gateway.request("PUT", "/files/uploads/big.bin", headers: [("Content-Type", "application/octet-stream")], body: upload)
            #expect(put.status == 200 && put.json["verified"] as? Bool == true && put.json["body_bytes"] as? Int == 100_000, "\(put.text)")
            let post = try await gateway.request("POST", "/api/orders?page=2", headers: [("Content-Type", "application/json")], body: #"{"item":"book"}"#)
            #expect(post.status == 200 && post.json["verified"] as? Bool == true && post.json["body_bytes"] as? Int == 15, "\(post.text)")
            #expect(post.json["authorization_scheme"] as? String == "AWS4-HMAC-SHA256")
        }
        try await withGateway(config(secret: "not-the-secret")) { gateway in
            let refused = try await gateway.request("GET", "/files/photos/a.jpg")
            #expect(refused.status == 403 && refused.json["verified"] as? Bool == false, "\(refused.text)")
        }
    }
}
