@testable import GatewayAuth
import GatewayConfig
import GatewayCore
import NIOCore
import Testing

/// RFC 7662 answers as decisions, without sockets: active/inactive, the gateway's own time, issuer and audience
/// checks, who the consumer is, and what is not an answer at all.
@Suite struct IntrospectionAnswerTests {
    let now: Int64 = 1_800_000_000
    static let base = IntrospectionConfig(upstream: "idp", path: "/introspect", clientID: "gateway", clientSecret: "s")

    func decide(_ json: String, config: IntrospectionConfig = base) throws -> (TokenIntrospector.Answer, expiresAt: Int64?) {
        try TokenIntrospector.answer(from: ByteBuffer(string: json), config: config, now: now)
    }

    func describe(_ json: String, config: IntrospectionConfig = base) -> String {
        do {
            switch try decide(json, config: config).0 {
            case .active(let identity): return "active \(identity.subject) [\(identity.scopes.joined(separator: " "))]"
            case .inactive(let reason): return "inactive: \(reason)"
            }
        } catch {
            return "failed: \(error)"
        }
    }

    @Test func activeAnswersNameTheConsumer() throws {
        #expect(describe(#"{"active":true,"sub":"alice","username":"al","client_id":"web","scope":"a b"}"#) == "active alice [a b]")
        #expect(describe(#"{"active":true,"username":"al","client_id":"web"}"#) == "active al []")
        #expect(describe(#"{"active":true,"client_id":"reporting","scope":"orders:read"}"#) == "active reporting [orders:read]")
        let (answer, expiresAt) = try decide(#"{"active":true,"sub":"alice","exp":\#(now + 60)}"#)
        #expect(answer == .active(Identity(method: .introspection, subject: "alice", scopes: [])))
        #expect(expiresAt == now + 60)
    }

    @Test func theGatewayChecksTimeIssuerAndAudience() {
        #expect(describe(#"{"active":false}"#) == "inactive: the authorization server says inactive")
        #expect(describe(#"{"active":true,"sub":"a","exp":\#(now)}"#) == "inactive: expired")
        #expect(describe(#"{"active":true,"sub":"a","nbf":\#(now + 5)}"#) == "inactive: not valid yet")
        var strict = Self.base
        strict.issuer = "https://id.test/"
        strict.audiences = ["orders-api"]
        #expect(describe(#"{"active":true,"sub":"a","iss":"https://id.test/","aud":["x","orders-api"]}"#, config: strict) == "active a []")
        #expect(describe(#"{"active":true,"sub":"a","iss":"https://id.test/","aud":"orders-api"}"#, config: strict) == "active a []")
        #expect(describe(#"{"active":true,"sub":"a","iss":"https://evil.test/","aud":"orders-api"}"#, config: strict) == "inactive: wrong issuer")
        #expect(describe(#"{"active":true,"sub":"a","iss":"https://id.test/","aud":"billing"}"#, config: strict) == "inactive: wrong audience")
        #expect(describe(#"{"active":true,"sub":"a","iss":"https://id.test/"}"#, config: strict) == "inactive: wrong audience")
        #expect(describe(#"{"active":true,"sub":"a\r\nX-Admin: 1"}"#) == "inactive: control characters in the subject or scopes")
    }

    @Test func whatIsNotAnAnswer() {
        #expect(describe("not json") == "failed: the answer is not a JSON object")
        #expect(describe(#"["active"]"#) == "failed: the answer is not a JSON object")
        #expect(describe(#"{"active":"true"}"#) == #"failed: the answer has no boolean "active""#)
        #expect(describe(#"{"sub":"a"}"#) == #"failed: the answer has no boolean "active""#)
    }

    @Test func formEncoding() {
        #expect(QueryString.encoded("abc-._~XYZ019") == "abc-._~XYZ019")
        #expect(QueryString.encoded("a b+c/d=e&f:g") == "a%20b%2Bc%2Fd%3De%26f%3Ag")
        #expect(QueryString.encoded("é") == "%C3%A9")
    }
}
