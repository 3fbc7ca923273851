import Foundation
import NIOCore
import NIOSSL
import SwiftASN1
import X509

/// The client certificates their CAs revoked (`listeners[].tls.client_crl`): certificate revocation lists (RFC 5280
/// §5), PEM or DER, each accepted only when a certificate of `client_ca` signed it.
public struct RevocationList: Sendable {
    /// Revoked serial numbers (without leading zero bytes) by the name of the CA that issued them.
    private let revoked: [DistinguishedName: Set<[UInt8]>]
    /// Each list read: its issuer, how many certificates it revokes, and when the issuer promises the next list (nil:
    /// it does not say), for warnings, the metric and the admin API.
    public let issuers: [(name: String, revoked: Int, nextUpdate: Date?)]
    public var count: Int { revoked.values.reduce(0) { $0 + $1.count } }

    /// Reads every list in `files` and checks its signature against the CA certificates that may sign it.
    public init(files: [String], issuers: [Certificate]) throws {
        var revoked: [DistinguishedName: Set<[UInt8]>] = [:]
        var lists: [(String, Int, Date?)] = []
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw TLSFileError(file: file, problem: readProblem(file, "cannot be read"))
            }
            for der in try Self.documents(in: Array(data), file: file) {
                let list: CertificateRevocationList
                do {
                    list = try CertificateRevocationList(der: der)
                } catch {
                    throw TLSFileError(file: file, problem: "is not a certificate revocation list (\(error))")
                }
                guard let issuer = issuers.first(where: { $0.subject == list.issuer }) else {
                    throw TLSFileError(file: file, problem: "lists certificates of \(list.issuer), which is not in client_ca")
                }
                guard list.isSigned(by: issuer) else {
                    throw TLSFileError(file: file, problem: "is not signed by the client_ca certificate \(list.issuer) (wrong or altered list)")
                }
                revoked[list.issuer, default: []].formUnion(list.serials)
                lists.append(("\(list.issuer)", list.serials.count, list.nextUpdate))
            }
        }
        self.revoked = revoked
        self.issuers = lists
    }

    /// Whether the CA that issued `certificate` lists it as revoked.
    public func isRevoked(_ certificate: Certificate) -> Bool {
        revoked[certificate.issuer]?.contains(Self.normalized(certificate.serialNumber.bytes)) == true
    }

    static func normalized(_ serial: ArraySlice<UInt8>) -> [UInt8] { Array(serial.drop { $0 == 0 }) }

    /// The DER lists in a file: its `X509 CRL` PEM blocks, or the file itself when it is not PEM.
    private static func documents(in bytes: [UInt8], file: String) throws -> [[UInt8]] {
        guard let text = String(validating: bytes, as: UTF8.self), text.contains("-----BEGIN") else { return [bytes] }
        let blocks = try PEMDocument.parseMultiple(pemString: text).filter { $0.discriminator == "X509 CRL" }
        guard !blocks.isEmpty else { throw TLSFileError(file: file, problem: "has no -----BEGIN X509 CRL----- block") }
        return blocks.map(\.derBytes)
    }
}

/// One parsed CRL: what `RevocationList` needs of it.
struct CertificateRevocationList {
    let issuer: DistinguishedName
    let nextUpdate: Date?
    let serials: Set<[UInt8]>
    /// The signed part (tbsCertList, as encoded), the algorithm and the signature over it.
    let signed: ArraySlice<UInt8>
    let algorithm: ASN1ObjectIdentifier
    let signature: ArraySlice<UInt8>

    /// CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue BIT STRING }, where
    /// TBSCertList ::= SEQUENCE { version INTEGER OPTIONAL, signature AlgorithmIdentifier, issuer Name, thisUpdate Time,
    /// nextUpdate Time OPTIONAL, revokedCertificates SEQUENCE OF SEQUENCE { userCertificate INTEGER, ... } OPTIONAL,
    /// crlExtensions [0] OPTIONAL }.
    init(der: [UInt8]) throws {
        let root = try DER.parse(der)
        var parts = try Self.children(of: root)
        guard let tbs = parts.next(), let algorithmNode = parts.next(), let signatureNode = parts.next() else { throw Self.malformed }
        signed = tbs.encodedBytes
        algorithm = try Self.algorithm(algorithmNode)
        signature = try ASN1BitString(derEncoded: signatureNode).bytes
        var fields = try Self.children(of: tbs)
        var field = fields.next()
        if field?.identifier == .integer { field = fields.next() }  // version
        guard let innerAlgorithm = field, try Self.algorithm(innerAlgorithm) == algorithm else { throw Self.malformed }
        guard let issuerNode = fields.next(), let thisUpdate = fields.next() else { throw Self.malformed }
        issuer = try DistinguishedName(derEncoded: issuerNode)
        _ = try Self.date(thisUpdate)
        field = fields.next()
        if let node = field, node.identifier == .utcTime || node.identifier == .generalizedTime {
            nextUpdate = try Self.date(node)
            field = fields.next()
        } else {
            nextUpdate = nil
        }
        var serials: Set<[UInt8]> = []
        if let node = field, node.identifier == .sequence {
            var entries = try Self.children(of: node)
            while let entry = entries.next() {
                var members = try Self.children(of: entry)
                guard let serial = members.next(), serial.identifier == .integer, case .primitive(let bytes) = serial.content else {
                    throw Self.malformed
                }
                serials.insert(RevocationList.normalized(bytes))
            }
        }
        self.serials = serials
    }

    /// Whether `issuer`'s key made the signature (RSA PKCS #1 v1.5, ECDSA or Ed25519 with the usual hashes).
    func isSigned(by issuer: Certificate) -> Bool {
        let known: [ASN1ObjectIdentifier: Certificate.SignatureAlgorithm] = [
            [1, 2, 840, 10045, 4, 3, 2]: .ecdsaWithSHA256, [1, 2, 840, 10045, 4, 3, 3]: .ecdsaWithSHA384,
            [1, 2, 840, 10045, 4, 3, 4]: .ecdsaWithSHA512, [1, 2, 840, 113549, 1, 1, 11]: .sha256WithRSAEncryption,
            [1, 2, 840, 113549, 1, 1, 12]: .sha384WithRSAEncryption, [1, 2, 840, 113549, 1, 1, 13]: .sha512WithRSAEncryption,
            [1, 3, 101, 112]: .ed25519,
        ]
        guard let algorithm = known[algorithm] else { return false }
        return issuer.publicKey.isValidSignature(signature, for: signed, signatureAlgorithm: algorithm)
    }

    static let malformed = ASN1Error.invalidASN1Object(reason: "not a CertificateList")

    private static func children(of node: ASN1Node) throws -> ASN1NodeCollection.Iterator {
        guard case .constructed(let children) = node.content else { throw malformed }
        return children.makeIterator()
    }

    /// The OID of an AlgorithmIdentifier (its parameters, if any, are the algorithm's own business).
    private static func algorithm(_ node: ASN1Node) throws -> ASN1ObjectIdentifier {
        var members = try children(of: node)
        guard let oid = members.next() else { throw malformed }
        return try ASN1ObjectIdentifier(derEncoded: oid)
    }

    private static func date(_ node: ASN1Node) throws -> Date {
        let parts: (year: Int, month: Int, day: Int, hours: Int, minutes: Int, seconds: Int)
        if node.identifier == .utcTime {
            let time = try UTCTime(derEncoded: node)
            parts = (time.year, time.month, time.day, time.hours, time.minutes, time.seconds)
        } else {
            let time = try GeneralizedTime(derEncoded: node)
            parts = (time.year, time.month, time.day, time.hours, time.minutes, time.seconds)
        }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let components = DateComponents(
            year: parts.year, month: parts.month, day: parts.day, hour: parts.hours, minute: parts.minutes, second: parts.seconds)
        guard let date = calendar.date(from: components) else { throw malformed }
        return date
    }
}

/// A client certificate is accepted only when it is not revoked by its issuer, nor is any CA certificate between it and
/// `client_ca`; and, like BoringSSL's own check for TLS clients, a leaf that limits its key's purposes must allow
/// client authentication.
struct ClientCertificatePolicy: VerifierPolicy {
    let revocations: RevocationList
    let verifyingCriticalExtensions: [ASN1ObjectIdentifier] = [.X509ExtensionID.extendedKeyUsage]

    func chainMeetsPolicyRequirements(chain: UnverifiedCertificateChain) -> PolicyEvaluationResult {
        if let usage = try? chain.leaf.extensions.extendedKeyUsage, !usage.contains(.clientAuth), !usage.contains(.any) {
            return .failsToMeetPolicy(reason: "the certificate is not for client authentication")
        }
        for certificate in chain where revocations.isRevoked(certificate) {
            return .failsToMeetPolicy(reason: "\(certificate.subject) is revoked")
        }
        return .meetsPolicy
    }
}

/// The chain check of a listener with revocation lists, which replaces BoringSSL's (swift-nio-ssl has no other way to add
/// one): RFC 5280 path validation to `client_ca` with the certificates the client sent as intermediates, then
/// `ClientCertificatePolicy`.
struct ClientCertificateCheck: Sendable {
    let roots: [Certificate]
    let revocations: RevocationList

    func verify(_ presented: [NIOSSLCertificate], _ promise: EventLoopPromise<NIOSSLVerificationResult>) {
        let parsed = presented.compactMap { try? Certificate(derEncoded: $0.toDERBytes()) }
        guard parsed.count == presented.count, let leaf = parsed.first else { return promise.succeed(.failed) }
        promise.completeWithTask { [roots, revocations] in
            var verifier = Verifier(rootCertificates: CertificateStore(roots)) {
                RFC5280Policy()
                ClientCertificatePolicy(revocations: revocations)
            }
            let result = await verifier.validate(leaf: leaf, intermediates: CertificateStore(parsed.dropFirst()))
            if case .validCertificate = result { return .certificateVerified }
            return .failed
        }
    }
}
