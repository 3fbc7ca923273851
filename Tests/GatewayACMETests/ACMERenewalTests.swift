import Crypto
import Foundation
@testable import GatewayACME
import GatewayPolicy
import Testing

/// The ACME manager's rules, without a CA: when a certificate is due, how long to wait.
@Suite struct ACMERenewalTests {
    static let day: TimeInterval = 86400

    // Due when less than renew_before is left, for a placeholder, or when the names differ from the config's.
    @Test func due() {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let names = ["api.example.com", "www.example.com"]
        func due(_ left: TimeInterval, names certified: [String] = names, placeholder: Bool = false) -> Bool {
            ACMERenewal.isDue(
                notAfter: now + left, names: certified, wanted: names, placeholder: placeholder, now: now, renewBefore: 30 * Self.day)
        }
        #expect(!due(60 * Self.day))
        #expect(due(29 * Self.day))
        #expect(due(-Self.day), "expired")
        #expect(due(60 * Self.day, placeholder: true))
        #expect(due(60 * Self.day, names: ["api.example.com"]), "a name was added to the config")
        #expect(!due(60 * Self.day, names: ["www.example.com", "api.example.com"]), "order does not matter")
    }

    // Failed orders back off from a minute to six hours; idle checks come when the next certificate is due, within 12 h.
    @Test func delays() {
        let delays = (1...12).map { ACMERenewal.retryDelay(failures: $0) }
        #expect(delays.prefix(4) == [60, 120, 240, 480])
        #expect(delays.last == Double(6 * 3600))
        // The CA's Retry-After is a floor (a rate limit lasts as long as it says), not a replacement for the backoff.
        #expect(ACMERenewal.retryDelay(failures: 1, retryAfter: 3 * 3600) == 3 * 3600)
        #expect(ACMERenewal.retryDelay(failures: 12, retryAfter: 60) == 6 * 3600)
        #expect(ACMEProblem.retryAfter("120", now: 1_000) == 120)
        #expect(ACMEProblem.retryAfter("Sun, 06 Nov 1994 08:49:37 GMT", now: 784_111_777 - 30) == 30)
        #expect(ACMEProblem.retryAfter("Sun, 06 Nov 1994 08:49:37 GMT", now: 784_111_777 + 30) == nil, "past")
        #expect(ACMEProblem.retryAfter(nil, now: 0) == nil && ACMEProblem.retryAfter("soon", now: 0) == nil && ACMEProblem.retryAfter("0", now: 0) == nil)
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        #expect(ACMERenewal.nextCheck(dueAt: [now + 3600, now + 30 * Self.day], now: now) == 3600)
        #expect(ACMERenewal.nextCheck(dueAt: [now + 30 * Self.day], now: now) == 12 * 3600)
        #expect(ACMERenewal.nextCheck(dueAt: [now - 10], now: now) == 60)
        #expect(ACMERenewal.nextCheck(dueAt: [], now: now) == 12 * 3600)
    }
}

/// The account key's JSON Web Signatures and thumbprint (RFC 8555 §6.2, RFC 7638), checked with the public key.
@Suite struct ACMEAccountKeyTests {
    @Test func signaturesVerify() throws {
        let key = P256.Signing.PrivateKey()
        let account = ACMEAccountKey(key)
        // RFC 7638 §3: the required members only, in lexicographic order, no whitespace.
        #expect(account.jwk.hasPrefix(#"{"crv":"P-256","kty":"EC","x":""#) && !account.jwk.contains(" "))
        #expect(account.thumbprint == Base64URL.encode(SHA256.hash(data: Array(account.jwk.utf8))))
        #expect(account.thumbprint.count == 43)

        let protected = #"{"alg":"ES256","nonce":"n1","url":"https://ca.example/new-order"}"#
        let body = try account.jws(protected: protected, payload: #"{"identifiers":[]}"#)
        let document = try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: String])
        let (header, payload, signature) = (document["protected"] ?? "", document["payload"] ?? "", document["signature"] ?? "")
        let decodedHeader = Base64URL.decode(Substring(header).utf8) ?? []
        let decodedPayload = Base64URL.decode(Substring(payload).utf8) ?? []
        #expect(String(decoding: decodedHeader, as: UTF8.self) == protected)
        #expect(String(decoding: decodedPayload, as: UTF8.self) == #"{"identifiers":[]}"#)
        let raw = try #require(Base64URL.decode(Substring(signature).utf8))
        let parsed = try P256.Signing.ECDSASignature(rawRepresentation: raw)
        #expect(key.publicKey.isValidSignature(parsed, for: Array((header + "." + payload).utf8)))
        // POST-as-GET: an empty payload.
        let empty = try JSONSerialization.jsonObject(with: Data(try account.jws(protected: protected, payload: ""))) as? [String: String]
        #expect(empty?["payload"] == "")
    }
}
