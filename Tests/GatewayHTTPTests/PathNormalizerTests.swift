import GatewayHTTP
import Testing

/// One normalisation before routing: the cases attackers use to reach a route they should not.
@Suite struct PathNormalizerTests {
    static let cases: [(String, Result<String, PathNormalizer.Failure>)] = [
        ("/api/v1/orders?x=%2e%2e", .success("/api/v1/orders?x=%2e%2e")),  // the query is left alone
        ("/api/v1/../admin", .success("/api/admin")),
        ("/api/v1/%2e%2e/admin", .success("/api/admin")),
        ("/api/v1/%2E%2e/%2e/admin", .success("/api/admin")),
        ("//admin", .success("/admin")),
        ("/api//v1///x", .success("/api/v1/x")),
        ("/../../etc/passwd", .success("/etc/passwd")),
        ("/a/b/..", .success("/a/")),
        ("/a/..", .success("/")),
        ("/a/.", .success("/a/")),
        ("/a/", .success("/a/")),
        ("/", .success("/")),
        ("/%41%62c", .success("/Abc")),
        ("/caf%c3%a9", .success("/caf%C3%A9")),
        ("/a%20b", .success("/a%20b")),
        ("/a..b/.c", .success("/a..b/.c")),
        ("/api%2Fadmin", .failure(.encodedSlash)),
        ("/api%5cadmin", .failure(.encodedSlash)),
        ("/api\\admin", .failure(.backslash)),
        ("/bad%zz", .failure(.invalidPercentEncoding)),
        ("/bad%2", .failure(.invalidPercentEncoding)),
        ("/nul%00", .failure(.encodedNul)),
        ("/admin#x", .failure(.fragment)),
        ("/admin#/../public", .failure(.fragment)),  // a backend dropping the fragment would serve /admin
        ("/a?b=1#c", .failure(.fragment)),
        ("/a%23b", .success("/a%23b")),  // an encoded "#" is data
        ("*", .success("*")),
        ("relative", .failure(.notOriginForm)),
    ]

    @Test(arguments: cases.indices) func normalizes(_ index: Int) {
        let (input, expected) = Self.cases[index]
        let actual = PathNormalizer.normalize(input)
        #expect(actual == expected, "\(input)")
    }

    @Test func encodedSlashesMayBeKept() {
        let kept = PathNormalizer.normalize("/files/a%2fb/../c", encodedSlashes: .keep)
        #expect(kept == .success("/files/c"))
        let plain = PathNormalizer.normalize("/files/a%2fb", encodedSlashes: .keep)
        #expect(plain == .success("/files/a%2Fb"))
    }
}
