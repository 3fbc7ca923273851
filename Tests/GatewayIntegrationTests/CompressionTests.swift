import DemoUpstream
import Foundation
import Testing
import TestSupport

/// gzip responses (`compression`) against a real upstream on 127.0.0.1, decoded with zlib's own inflate.
@Suite(.serialized) struct CompressionTests {
    static func config(top: String = #""compression": { "min_bytes": 1024 },"#, h2c: Bool = false) -> String {
        basicConfig(
            routes: """
                [{ "name": "cached", "match": { "path_prefix": "/cacheable" }, "upstream": "demo", "cache": { "enabled": true } },
                 { "name": "off", "match": { "path_prefix": "/off" }, "upstream": "demo", "strip_prefix": "/off", "compression": { "enabled": false } },
                 { "name": "all", "upstream": "demo" }]
                """,
            top: top
        ).replacingOccurrences(of: #""port": 0 }"#, with: h2c ? #""port": 0, "h2c": true }"#: #""port": 0 }"#)
    }

    /// A client that takes gzip but not br.
    static let gzip = [("Accept-Encoding", "gzip, deflate")]
    static let text = "/bytes/100000?type=text%2Fplain"

    /// The body decoded, or "" when it is not a complete gzip stream.
    static func gunzipped(_ body: [UInt8]) -> String {
        guard let decoded = Gunzip.decode(body), decoded.complete else { return "" }
        return String(decoding: decoded.data, as: UTF8.self)
    }

    // A client that accepts gzip gets a compressible response compressed (streamed, so without Content-Length),
    // marked, varied and with a weak validator; one that does not gets it as it was, with the same Vary.
    @Test func compressesWhenTheClientAccepts() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(), upstreams: upstreams) { gateway in
                let compressed = try await gateway.request("GET", Self.text, headers: Self.gzip)
                #expect(compressed.status == 200)
                #expect(compressed.header("content-encoding") == "gzip")
                #expect(compressed.header("content-length") == nil)
                #expect(compressed.header("transfer-encoding") == "chunked")
                #expect(compressed.header("vary")?.lowercased() == "accept-encoding")
                #expect(compressed.body.count < 2_000, "100,000 x's took \(compressed.body.count) bytes")
                #expect(Self.gunzipped(compressed.body) == String(repeating: "x", count: 100_000))
                let plain = try await gateway.request("GET", Self.text)
                #expect(plain.header("content-encoding") == nil)
                #expect(plain.header("content-length") == "100000")
                #expect(plain.header("vary")?.lowercased() == "accept-encoding")
                #expect(plain.body.count == 100_000)
                let refused = try await gateway.request("GET", Self.text, headers: [("Accept-Encoding", "gzip;q=0, deflate")])
                #expect(refused.header("content-encoding") == nil)
                let etag = try await gateway.request("GET", "/cacheable?size=5000&type=application%2Fjson&etag=%22v1%22", headers: Self.gzip)
                #expect(etag.header("etag") == #"W/"v1""#)
                #expect(Self.gunzipped(etag.body).count == 5_000)
                let head = try await gateway.request("HEAD", Self.text, headers: Self.gzip)
                #expect(head.header("content-encoding") == nil)
                #expect(head.header("content-length") == "100000")
            }
        }
    }

    // br for clients that take it (a browser's "gzip, deflate, br"), streamed and flushed part by part like gzip;
    // the client's q-values first, then the configured order; encodings narrows what is offered.
    @Test func brotliWhenPreferred() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(), upstreams: upstreams) { gateway in
                let browser = try await gateway.request("GET", Self.text, headers: [("Accept-Encoding", "gzip, deflate, br")])
                #expect(browser.header("content-encoding") == "br")
                #expect(browser.header("vary")?.lowercased() == "accept-encoding")
                let decoded = try #require(Unbrotli.decode(browser.body))
                #expect(decoded.complete)
                #expect(decoded.data.count == 100_000)
                #expect(browser.body.count < 1_000, "100,000 x's took \(browser.body.count) bytes")
                let streamed = try await gateway.request("GET", "/stream?chunks=3&interval_ms=10", headers: [("Accept-Encoding", "br")])
                let chunks = try #require(Unbrotli.decode(streamed.body))
                #expect(chunks.complete && !chunks.data.isEmpty)
                let gzipFirst = try await gateway.request("GET", Self.text, headers: [("Accept-Encoding", "br;q=0.5, gzip")])
                #expect(gzipFirst.header("content-encoding") == "gzip")
            }
            let gzipOnly = Self.config(top: #""compression": { "encodings": ["gzip"] },"#)
            try await withGateway(gzipOnly, upstreams: upstreams) { gateway in
                let response = try await gateway.request("GET", Self.text, headers: [("Accept-Encoding", "br, gzip")])
                #expect(response.header("content-encoding") == "gzip")
            }
        }
    }

    // zstd when offered (it is not by default) and the client takes it, as browsers since 2024 and curl do; streamed
    // part by part; a client that takes only the others gets one of those. Decoded by libzstd, and by curl itself.
    @Test func zstdWhenOffered() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(), upstreams: upstreams) { gateway in
                let notOffered = try await gateway.request("GET", Self.text, headers: [("Accept-Encoding", "zstd")])
                #expect(notOffered.header("content-encoding") == nil, "not among the default encodings")
            }
            let offered = Self.config(top: #""compression": { "encodings": ["zstd", "br", "gzip"], "zstd_level": 5 },"#)
            try await withGateway(offered, upstreams: upstreams) { gateway in
                let browser = try await gateway.request("GET", Self.text, headers: [("Accept-Encoding", "gzip, deflate, br, zstd")])
                #expect(browser.header("content-encoding") == "zstd" && browser.header("vary")?.lowercased() == "accept-encoding")
                let decoded = try #require(Unzstd.decode(browser.body))
                #expect(decoded.complete && decoded.data == Array(repeating: UInt8(ascii: "x"), count: 100_000))
                #expect(browser.body.count < 1_000, "100,000 x's took \(browser.body.count) bytes")
                let streamed = try await gateway.request("GET", "/stream?chunks=3&interval_ms=10", headers: [("Accept-Encoding", "zstd")])
                let chunks = try #require(Unzstd.decode(streamed.body))
                #expect(chunks.complete && !chunks.data.isEmpty)
                let older = try await gateway.request("GET", Self.text, headers: [("Accept-Encoding", "gzip, br")])
                #expect(older.header("content-encoding") == "br")
                let port = gateway.gateway.listeners[0].port
                let curl = try await shell("curl -s --compressed -o /dev/null -w '%{size_download} %{http_code}' http://127.0.0.1:\(port)\(Self.text) -H 'Accept-Encoding: zstd'")
                #expect(curl.stdout.hasSuffix(" 200") && (Int(curl.stdout.split(separator: " ")[0]) ?? 100_000) < 1_000, "\(curl.stdout)")
            }
        }
    }

    // Types that are not listed, small bodies and routes that turn it off pass as they are, without Vary.    // Types that are not listed, small bodies and routes that turn it off pass as they are, without Vary.
    @Test func leavesOtherResponsesAlone() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(), upstreams: upstreams) { gateway in
                let binary = try await gateway.request("GET", "/bytes/100000", headers: Self.gzip)
                let small = try await gateway.request("GET", "/bytes/1000?type=text%2Fplain", headers: Self.gzip)
                let off = try await gateway.request("GET", "/off" + Self.text, headers: Self.gzip)
                for response in [binary, small, off] {
                    #expect(response.header("content-encoding") == nil)
                    #expect(response.header("vary") == nil)
                }
                // Cache-Control: no-transform forbids changing the bytes (the directive matched case-insensitively in a list).
                let untouchable = try await gateway.request(
                    "GET", "/cacheable?cc=public%2C%20No-Transform&size=5000&type=text%2Fplain", headers: Self.gzip)
                #expect(untouchable.header("content-encoding") == nil)
                #expect(untouchable.body.count == 5_000)
                #expect(binary.body.count == 100_000)
                #expect(small.body.count == 1_000)
                #expect(off.body.count == 100_000)
            }
            // Without a top-level `compression` nothing is compressed.
            try await withGateway(Self.config(top: ""), upstreams: upstreams) { gateway in
                let response = try await gateway.request("GET", Self.text, headers: Self.gzip)
                #expect(response.header("content-encoding") == nil)
                #expect(response.body.count == 100_000)
            }
        }
    }

    // Streamed bodies of unknown length (chunked from the upstream, several reads) compress too.
    @Test func streamedBodies() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(), upstreams: upstreams) { gateway in
                let streamed = try await gateway.request("GET", "/stream?chunks=5&interval_ms=20", headers: Self.gzip)
                #expect(streamed.header("content-encoding") == "gzip")
                let chunks = (0..<5).map { "chunk \($0)\n" }.joined()
                #expect(Self.gunzipped(streamed.body) == chunks)
                let large = try await gateway.request("GET", "/bytes/3000000?chunked=1&type=text%2Fcsv", headers: Self.gzip)
                #expect(large.header("content-encoding") == "gzip")
                #expect(Self.gunzipped(large.body).utf8.count == 3_000_000)
            }
        }
    }

    // The cache keeps the upstream's own bytes: a hit is compressed for a client that accepts gzip and sent
    // as stored to one that does not.
    @Test func cachedResponses() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(), upstreams: upstreams) { gateway in
                let path = "/cacheable?cc=max-age%3D60&size=20000&type=text%2Fhtml"
                let miss = try await gateway.request("GET", path, headers: Self.gzip)
                let hitGzip = try await gateway.request("GET", path, headers: Self.gzip)
                let hitPlain = try await gateway.request("GET", path)
                let cacheStates = [miss, hitGzip, hitPlain].map { $0.header("x-cache") ?? "-" }
                let encodings = [miss, hitGzip, hitPlain].map { $0.header("content-encoding") ?? "-" }
                #expect(cacheStates == ["MISS", "HIT", "HIT"])
                #expect(encodings == ["gzip", "gzip", "-"])
                #expect(Self.gunzipped(miss.body).utf8.count == 20_000)
                #expect(Self.gunzipped(hitGzip.body).utf8.count == 20_000)
                #expect(hitGzip.header("content-length") == String(hitGzip.body.count), "a whole cached body has its length")
                #expect(hitPlain.body.count == 20_000)
            }
        }
    }

    // HTTP/2 clients get the same.
    @Test func http2() async throws {
        try await withUpstreams { upstreams in
            try await withGateway(Self.config(h2c: true), upstreams: upstreams) { gateway in
                let client = try await H2Client.connect(port: gateway.port)
                let response = try await client.request("GET", Self.text, headers: [("accept-encoding", "gzip")])
                await client.close()
                #expect(response.status == 200)
                #expect(response.header("content-encoding") == "gzip")
                #expect(Self.gunzipped(response.bytes) == String(repeating: "x", count: 100_000))
            }
        }
    }
}
