import Crypto
import Foundation
import GatewayClient
import GatewayConfig
import GatewayCore
import GatewayPolicy
import NIOCore
import NIOSSL

/// An ACME account key (RFC 8555 §6.2): requests are JSON Web Signatures with ES256 over a P-256 key, the key named by
/// its JWK until the account exists, by the account's URL after.
struct ACMEAccountKey: Sendable {
    let key: P256.Signing.PrivateKey
    /// The public key as a JWK, members in the order RFC 7638 hashes them.
    let jwk: String
    /// RFC 7638 thumbprint: what an HTTP-01 key authorization ends with.
    let thumbprint: String

    init(_ key: P256.Signing.PrivateKey) {
        self.key = key
        // x963: 0x04, then X and Y (32 bytes each).
        let point = Array(key.publicKey.x963Representation)
        let x = Base64URL.encode(point[1..<33])
        let y = Base64URL.encode(point[33..<65])
        jwk = #"{"crv":"P-256","kty":"EC","x":"\#(x)","y":"\#(y)"}"#
        thumbprint = Base64URL.encode(SHA256.hash(data: Array(jwk.utf8)))
    }

    /// The flattened JWS JSON serialization of `payload` ("" for POST-as-GET) under `protected`.
    /// RFC 8555 §7.3.4: the account's public key (JWK) signed with the CA's MAC key (HS256), in a flattened JWS whose
    /// protected header names the CA's key id and the newAccount URL.
    func externalAccountBinding(_ binding: ACMEConfig.ExternalAccountBinding, url: String) -> JSONValue {
        var protected = #"{"alg":"HS256","kid":"#
        JSONText.appendQuoted(binding.keyID, to: &protected)
        protected += #","url":"#
        JSONText.appendQuoted(url, to: &protected)
        protected += "}"
        let signingInput = Base64URL.encode(Array(protected.utf8)) + "." + Base64URL.encode(Array(jwk.utf8))
        let mac = HMAC<SHA256>.authenticationCode(for: Array(signingInput.utf8), using: SymmetricKey(data: binding.hmacKey))
        let parts = signingInput.split(separator: ".", omittingEmptySubsequences: false)
        return .object([("protected", .string(String(parts[0]))), ("payload", .string(String(parts[1]))), ("signature", .string(Base64URL.encode(mac)))])
    }

    func jws(protected: String, payload: String) throws -> [UInt8] {
        let signingInput = Base64URL.encode(Array(protected.utf8)) + "." + Base64URL.encode(Array(payload.utf8))
        let signature = try key.signature(for: Array(signingInput.utf8))
        let parts = signingInput.split(separator: ".", omittingEmptySubsequences: false)
        let body = #"{"protected":"\#(parts[0])","payload":"\#(parts[1])","signature":"\#(Base64URL.encode(signature.rawRepresentation))"}"#
        return Array(body.utf8)
    }
}

/// What an ACME server refused, from its problem document (RFC 8555 §6.7): `urn:ietf:params:acme:error:rateLimited`
/// and the like, with the server's own words.
public struct ACMEProblem: Error, CustomStringConvertible, Sendable {
    public let status: Int
    public let type: String
    public let detail: String
    /// The CA's `Retry-After` (a rate limit, maintenance), in seconds from when it answered: no new order before then.
    public var retryAfter: TimeInterval?
    public var description: String { "\(type.isEmpty ? "HTTP \(status)" : type): \(detail)" }

    public init(status: Int, type: String, detail: String, retryAfter: TimeInterval? = nil) {
        (self.status, self.type, self.detail, self.retryAfter) = (status, type, detail, retryAfter)
    }

    /// `Retry-After` as seconds (`120`) or an HTTP date, relative to `now` (Unix seconds); nil when absent or past.
    public static func retryAfter(_ value: String?, now: Int) -> TimeInterval? {
        guard let value = value?.trimmingASCIISpaces(), !value.isEmpty else { return nil }
        if let seconds = Int(value) { return seconds > 0 ? TimeInterval(seconds) : nil }
        guard let date = HTTPDate.parse(value), date > now else { return nil }
        return TimeInterval(date - now)
    }
}

/// A client of one ACME server (RFC 8555) for one account: orders a certificate for some names, proves control of each
/// with an HTTP-01 challenge the gateway answers itself (or a DNS-01 challenge whose record it puts in the zone), and
/// downloads the chain. One order at a time.
actor ACMEClient {
    private let directoryURL: String
    private let account: ACMEAccountKey
    private let contact: String?
    private let tls: NIOSSLContext?
    private let eventLoop: EventLoop
    /// `acme.dns_update`: DNS-01 challenges instead of HTTP-01.
    private let dns: DNSUpdater?
    /// `acme.external_account_binding`: what binds a new account to the operator's account with the CA.
    private let externalAccount: ACMEConfig.ExternalAccountBinding?
    private var directory: [String: String]?
    private var nonce: String?
    private var accountURL: String?
    /// How long to wait for the server to validate or issue before giving up on an order.
    static let pollAttempts = 120

    init(
        directoryURL: String, account: ACMEAccountKey, contact: String?, tls: NIOSSLContext?, eventLoop: EventLoop, dnsUpdate: DNSUpdateConfig? = nil,
        externalAccount: ACMEConfig.ExternalAccountBinding? = nil
    ) {
        self.externalAccount = externalAccount
        self.directoryURL = directoryURL
        self.account = account
        self.contact = contact
        self.tls = tls
        self.eventLoop = eventLoop
        self.dns = dnsUpdate.map { DNSUpdater(config: $0, eventLoop: eventLoop) }
    }

    /// A certificate chain (PEM, leaf first) for `names`, requested with `csr` (DER). `challenges` holds the key
    /// authorization for each token while the server validates it.
    func certificate(for names: [String], csr: [UInt8], challenges: ACMEChallenges) async throws -> String {
        try await registerAccount()
        let order = try await post(endpoint("newOrder"), payload: .object([
            ("identifiers", .array(names.map { .object([("type", .string("dns")), ("value", .string($0))]) }))
        ]))
        guard let orderURL = order.response.headers.first(name: "location") else { throw Self.malformed("the new order has no Location") }
        for authorization in order.json.strings("authorizations") {
            try await authorize(authorization, challenges: challenges)
        }
        guard let finalize = order.json.string("finalize") else { throw Self.malformed("the order has no finalize URL") }
        let finalized = try await post(finalize, payload: .object([("csr", .string(Base64URL.encode(csr)))])).json
        let state = try await poll(orderURL, from: finalized, late: "the certificate was not issued in time") { order in
            Self.failure(order, "the order became invalid")
        }
        guard let certificateURL = state.string("certificate") else { throw Self.malformed("the valid order has no certificate URL") }
        let chain = try await post(certificateURL, payload: nil, accept: "application/pem-certificate-chain")
        return String(decoding: chain.response.body, as: UTF8.self)
    }

    /// Proves control of one name: answers its HTTP-01 challenge (or with `dns_update` its DNS-01 challenge) and waits
    /// for the server's verdict.
    private func authorize(_ url: String, challenges: ACMEChallenges) async throws {
        let authorization = try await post(url, payload: nil).json
        if authorization.string("status") == "valid" { return }
        let type = dns == nil ? "http-01" : "dns-01"
        guard let challenge = Self.challenge(type, of: authorization), let token = challenge.string("token"), let challengeURL = challenge.string("url")
        else { throw Self.malformed("the authorization offers no \(type) challenge") }
        guard !token.isEmpty, token.utf8.allSatisfy({ Base64URL.isAlphabet($0) }) else { throw Self.malformed("the challenge token is not base64url") }
        let keyAuthorization = token + "." + account.thumbprint
        // Undoes what proving the name put in place, whatever the verdict.
        let withdraw: () async -> Void
        if let dns {
            // RFC 8555 §8.4: a TXT record at _acme-challenge.<name> (a wildcard's authorization names its base name).
            guard let name = authorization["identifier"]?.string("value") else { throw Self.malformed("the authorization names no identifier") }
            let record = DNSUpdate.challengeName(for: name)
            let value = DNSUpdate.challengeValue(keyAuthorization: keyAuthorization)
            try await dns.apply([.addTXT(name: record, value: value, ttl: dns.config.ttlSeconds)])
            withdraw = { try? await dns.apply([.deleteTXT(name: record, value: value)]) }
            // The zone's other servers get the record from the primary (NOTIFY, then a transfer): the CA may ask any of them.
            if dns.config.propagationSeconds > 0 {
                do {
                    try await Task.sleep(for: .seconds(dns.config.propagationSeconds))
                } catch {
                    await withdraw()
                    throw error
                }
            }
        } else {
            try await challenges.set(token: token, keyAuthorization: keyAuthorization)
            withdraw = { await challenges.remove(token: token) }
        }
        do {
            _ = try await post(challengeURL, payload: .object([]))
            _ = try await poll(url, from: authorization, late: "the challenge was not validated in time") { failed in
                // The challenge's error says what the server saw (a 404, a timeout, a wrong answer, no TXT record).
                Self.failure(Self.challenge(type, of: failed)?["error"] ?? failed, "the server could not validate \(failed["identifier"]?.string("value") ?? "a name")")
            }
        } catch {
            await withdraw()
            throw error
        }
        await withdraw()
    }

    /// The challenge of `type` an authorization offers.
    private static func challenge(_ type: String, of authorization: JSONValue) -> JSONValue? {
        guard case .array(let offered)? = authorization["challenges"] else { return nil }
        return offered.first { $0.string("type") == type }
    }

    /// Fetches `url` (POST-as-GET) once a second, from `state`, until its status is `valid`: `invalid` ends it with the
    /// problem `refused` reads from the document, `pollAttempts` without a verdict with `late`.
    private func poll(_ url: String, from state: JSONValue, late: String, refused: (JSONValue) -> ACMEProblem) async throws -> JSONValue {
        var state = state
        var attempts = 0
        while state.string("status") != "valid" {
            if state.string("status") == "invalid" { throw refused(state) }
            attempts += 1
            guard attempts < Self.pollAttempts else { throw Self.malformed(late) }
            try await Task.sleep(for: .seconds(1))
            state = try await post(url, payload: nil).json
        }
        return state
    }

    /// Creates the account, or finds it again (the server answers 200 with its URL for a known key).
    private func registerAccount() async throws {
        guard accountURL == nil else { return }
        var payload: [(key: String, value: JSONValue)] = [("termsOfServiceAgreed", .bool(true))]
        if let contact { payload.append(("contact", .array([.string("mailto:" + contact)]))) }
        let newAccount = try await endpoint("newAccount")
        if let externalAccount { payload.append(("externalAccountBinding", account.externalAccountBinding(externalAccount, url: newAccount))) }
        let created = try await post(newAccount, payload: .object(payload))
        guard let url = created.response.headers.first(name: "location") else { throw Self.malformed("the account has no Location") }
        accountURL = url
    }

    // MARK: Requests

    private func endpoint(_ name: String) async throws -> String {
        if directory == nil {
            let response = try await send("GET", directoryURL, body: nil)
            guard response.status == 200, case .object(let members)? = try? JSONParser.parse(response.body) else {
                throw ACMEProblem(status: response.status, type: "", detail: "\(directoryURL) is not an ACME directory")
            }
            directory = Dictionary(members.compactMap { member in member.value.stringValue.map { (member.key, $0) } }, uniquingKeysWith: { first, _ in first })
        }
        guard let url = directory?[name] else { throw Self.malformed("the directory has no \(name)") }
        return url
    }

    /// A signed POST (`payload` nil: POST-as-GET). A `badNonce` refusal is tried again with the nonce it came with.
    private func post(_ url: String, payload: JSONValue?, accept: String = "application/json") async throws -> (response: HTTPFetch.Response, json: JSONValue) {
        var attempt = 0
        while true {
            attempt += 1
            let nonce = try await freshNonce()
            var protected = #"{"alg":"ES256","nonce":"#
            JSONText.appendQuoted(nonce, to: &protected)
            protected += #","url":"#
            JSONText.appendQuoted(url, to: &protected)
            if let accountURL {
                protected += #","kid":"#
                JSONText.appendQuoted(accountURL, to: &protected)
                protected += "}"
            } else {
                protected += #","jwk":\#(account.jwk)}"#
            }
            let body = try account.jws(protected: protected, payload: payload?.rendered ?? "")
            let response = try await send("POST", url, body: body, accept: accept)
            let json = (try? JSONParser.parse(response.body)) ?? .null
            if response.status < 400 { return (response, json) }
            let problem = ACMEProblem(
                status: response.status, type: json.string("type") ?? "", detail: json.string("detail") ?? "",
                retryAfter: ACMEProblem.retryAfter(response.headers.first(name: "retry-after"), now: Int(Date().timeIntervalSince1970)))
            if problem.type == "urn:ietf:params:acme:error:badNonce" && attempt < 3 { continue }
            // The CA forgot the account (a test CA restarted, an account deactivated): the next order registers again.
            if problem.type == "urn:ietf:params:acme:error:accountDoesNotExist" { accountURL = nil }
            throw problem
        }
    }

    private func freshNonce() async throws -> String {
        if let nonce {
            self.nonce = nil
            return nonce
        }
        let response = try await send("GET", try await endpoint("newNonce"), body: nil)
        guard let fresh = nonce else { throw ACMEProblem(status: response.status, type: "", detail: "newNonce gave no Replay-Nonce") }
        nonce = nil
        return fresh
    }

    private func send(_ method: String, _ url: String, body: [UInt8]?, accept: String = "application/json") async throws -> HTTPFetch.Response {
        var headers = [("Accept", accept)]
        if body != nil { headers.append(("Content-Type", "application/jose+json")) }
        let response = try await HTTPFetch.request(
            method, url, headers: headers, body: body, on: eventLoop, timeout: .seconds(30), maxBytes: 1 << 20, tls: tls
        ).get()
        if let fresh = response.headers.first(name: "replay-nonce") { nonce = fresh }
        return response
    }

    private static func malformed(_ detail: String) -> ACMEProblem { ACMEProblem(status: 0, type: "", detail: detail) }

    private static func failure(_ document: JSONValue, _ fallback: String) -> ACMEProblem {
        ACMEProblem(status: 0, type: document.string("type") ?? "", detail: document.string("detail") ?? fallback)
    }
}

extension JSONValue {
    func strings(_ key: String) -> [String] {
        guard case .array(let items)? = self[key] else { return [] }
        return items.compactMap(\.stringValue)
    }
}
