import Crypto
import Foundation
import GatewayConfig
import GatewayCore
import GatewayTLS
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import SwiftASN1
import X509

#if canImport(Glibc)
import Glibc
#endif

/// When an ACME certificate is due, and how long to wait after a failed order: pure rules, tested without a CA.
public enum ACMERenewal {
    /// A certificate is renewed once less than `renewBefore` of it is left, or when it is not the CA's (a placeholder),
    /// or does not name exactly what the config asks for.
    public static func isDue(notAfter: Date, names: [String], wanted: [String], placeholder: Bool, now: Date, renewBefore: TimeInterval) -> Bool {
        placeholder || Set(names) != Set(wanted) || notAfter.timeIntervalSince(now) < renewBefore
    }

    /// After `failures` failed orders in a row: a minute, doubling up to six hours (certificate authorities limit
    /// failed validations per hour; Let's Encrypt allows five per name), and never before the CA's `Retry-After`
    /// (RFC 8555 §6.6: a rate-limited client waits as long as it is told).
    public static func retryDelay(failures: Int, retryAfter: TimeInterval? = nil) -> TimeInterval {
        max(min(60 * pow(2, Double(max(0, failures - 1))), 6 * 3600), retryAfter ?? 0)
    }

    /// How long to sleep when nothing is due: until the earliest certificate is, at most twelve hours (a certificate
    /// replaced by hand, or a clock that jumped, is noticed within a day).
    public static func nextCheck(dueAt: [Date], now: Date) -> TimeInterval {
        let earliest = dueAt.min().map { $0.timeIntervalSince(now) } ?? 12 * 3600
        return max(60, min(earliest, 12 * 3600))
    }
}

/// `acme`: obtains and renews the certificates of listener entries marked `"acme": true` from an ACME CA (Let's Encrypt,
/// ZeroSSL, step-ca), proving control of each name with HTTP-01 challenges the gateway's own listeners answer (or, with
/// `dns_update`, DNS-01 challenges whose records it puts in the zone). Until the first certificate arrives a listener
/// serves a self-signed placeholder, so it can start; each issued chain and its new key are written under
/// `acme.storage` and the listeners read them again, without a restart. Kept across reloads while the `acme` settings
/// and the certificates asked for stay the same.
public final class ACMEManager: Sendable {
    public let config: ACMEConfig
    public let certificates: [ACMECertificate]
    public let challenges: ACMEChallenges
    /// The account key in `storage` (with a shared store, the one every instance uses is settled when work starts).
    private let localAccountKey: P256.Signing.PrivateKey
    private let tls: NIOSSLContext?
    private let eventLoop: EventLoop
    /// `acme.store: "redis"`: the account key, the certificates, the challenges and the ordering lock, shared.
    private let shared: (any SharedKeyValueStore)?
    /// Names this instance as a lock holder.
    private let instanceID = UUID().uuidString
    private let logger: Logger
    private let metrics: GatewayMetrics
    private let task = NIOLockedValueBox<Task<Void, Never>?>(nil)
    /// The subject organization of a placeholder certificate: how the manager tells it from the CA's.
    static let placeholderOrganization = "gateway ACME placeholder"

    /// How often an instance waiting for another one's order looks for its certificate in the shared store.
    static let sharedWaitSeconds: TimeInterval = 5
    /// How long the ordering lock outlives an instance that died while ordering.
    static let lockSeconds = 1800

    /// Reads (or makes) the account key and writes a placeholder for every certificate not yet on disk; throws when
    /// the storage folder cannot be used. `shared` is the store `acme.store: "redis"` asks for.
    public init(
        config: ACMEConfig, certificates: [ACMECertificate], shared: (any SharedKeyValueStore)? = nil, eventLoop: EventLoop, logger: Logger,
        metrics: GatewayMetrics = .disabled
    ) throws {
        self.config = config
        self.certificates = certificates
        self.shared = shared
        self.challenges = ACMEChallenges(shared: shared)
        self.eventLoop = eventLoop
        self.logger = logger
        self.metrics = metrics
        try Self.makeFolder(config.storage)
        localAccountKey = try Self.accountKey(in: config.storage)
        // The CA's own HTTPS certificate, verified as an upstream's is (the system store, or `ca_file` for a private CA).
        tls = try UpstreamTLS.makeContext(caFile: config.caFile)
        for certificate in certificates where !FileManager.default.fileExists(atPath: certificate.cert) {
            try Self.makeFolder((certificate.cert as NSString).deletingLastPathComponent)
            try Self.writePlaceholder(certificate)
        }
    }

    /// Starts obtaining and renewing; `issued` runs after new files are written (the gateway reloads its listeners' certificates).
    public func start(issued: @escaping @Sendable () -> Void) {
        let work = Task { [self] in
            var failures = 0
            var client: ACMEClient?
            /// Certificates another instance was ordering at the last check (said once in the log, not every few seconds).
            var waitingFor: Set<[String]> = []
            let renewBefore = TimeInterval(config.renewBeforeDays) * 86400
            while !Task.isCancelled {
                var dueAt: [Date] = []
                var failed = false
                var waiting = false
                var retryAfter: TimeInterval?
                for certificate in certificates {
                    if shared != nil {
                        do {
                            if try await adoptShared(certificate) { issued() }
                        } catch {
                            logger.error(
                                "acme: the shared store cannot be reached; the current certificate stays",
                                metadata: ["names": "\(certificate.names.joined(separator: ","))", "error": "\(error)"])
                            failed = true
                            continue
                        }
                    }
                    let state = Self.state(of: certificate)
                    guard
                        ACMERenewal.isDue(
                            notAfter: state.notAfter, names: state.names, wanted: certificate.names, placeholder: state.placeholder, now: Date(),
                            renewBefore: renewBefore)
                    else {
                        dueAt.append(state.notAfter - renewBefore)
                        waitingFor.remove(certificate.names)
                        continue
                    }
                    let outcome: Result<Void, ACMEProblem>
                    do {
                        let current: ACMEClient
                        if let client {
                            current = client
                        } else {
                            current = try await makeClient()
                        }
                        client = current
                        guard try await lock(certificate) else {
                            if waitingFor.insert(certificate.names).inserted {
                                logger.info(
                                    "acme: another instance is ordering this certificate; waiting for it",
                                    metadata: ["names": "\(certificate.names.joined(separator: ","))"])
                            }
                            waiting = true
                            continue
                        }
                        waitingFor.remove(certificate.names)
                        outcome = await obtain(certificate, from: current)
                        await unlock(certificate)
                    } catch {
                        outcome = .failure(ACMEProblem(status: 0, type: "", detail: "the shared store: \(error)"))
                        logger.error("acme: the shared store cannot be reached; the current certificate stays", metadata: ["error": "\(error)"])
                    }
                    switch outcome {
                    case .success:
                        issued()
                        dueAt.append(Self.state(of: certificate).notAfter - renewBefore)
                    case .failure(let problem):
                        failed = true
                        retryAfter = max(retryAfter ?? 0, problem.retryAfter ?? 0)
                    }
                }
                failures = failed ? failures + 1 : 0
                var delay =
                    failed ? ACMERenewal.retryDelay(failures: failures, retryAfter: retryAfter) : ACMERenewal.nextCheck(dueAt: dueAt, now: Date())
                // Another instance is ordering: its certificate is looked for soon (it takes seconds to a minute).
                if waiting && !failed { delay = min(delay, Self.sharedWaitSeconds) }
                try? await Task.sleep(for: .seconds(delay))
            }
        }
        task.withLockedValue { $0 = work }
    }

    public func stop() {
        task.withLockedValue { $0 }?.cancel()
    }

    // MARK: Sharing (`acme.store: "redis"`)

    /// The client of the CA for this account: with a shared store, the account key the first instance published (so
    /// the instances are one account at the CA, not one each); this instance's own key otherwise.
    private func makeClient() async throws -> ACMEClient {
        var key = localAccountKey
        if let shared {
            let published = try await shared.set(Self.accountKey, to: localAccountKey.pemRepresentation, expiringAfter: nil, onlyIfAbsent: true)
            if !published, let text = try await shared.get(Self.accountKey), text != localAccountKey.pemRepresentation {
                key = try P256.Signing.PrivateKey(pemRepresentation: text)
                try Self.write(text, to: config.storage + "/account-key.pem", mode: 0o600)
            }
        }
        return ACMEClient(
            directoryURL: config.directoryURL, account: ACMEAccountKey(key), contact: config.email, tls: tls, eventLoop: eventLoop,
            dnsUpdate: config.dnsUpdate, externalAccount: config.externalAccount)
    }

    static let accountKey = "gw:acme:account"

    /// The shared copy of a certificate from this CA: its key, then its chain (PEM).
    private func sharedKey(_ certificate: ACMECertificate) -> String {
        "gw:acme:certificate:" + certificate.names.joined(separator: ",") + "@" + config.directoryURL
    }

    private func lockKey(_ certificate: ACMECertificate) -> String {
        "gw:acme:lock:" + certificate.names.joined(separator: ",") + "@" + config.directoryURL
    }

    /// Whether this instance may order `certificate` now: always without a shared store; with one, when no other
    /// instance holds its lock (taken for `lockSeconds`, released when the order ends).
    private func lock(_ certificate: ACMECertificate) async throws -> Bool {
        guard let shared else { return true }
        return try await shared.set(lockKey(certificate), to: instanceID, expiringAfter: Self.lockSeconds, onlyIfAbsent: true)
    }

    private func unlock(_ certificate: ACMECertificate) async {
        try? await shared?.delete(lockKey(certificate), ifItHolds: instanceID)
    }

    /// Installs the shared copy of `certificate` when it is newer than the one on disk (or that is a placeholder) and
    /// is what the config asks for, with its own key; true when it was installed.
    private func adoptShared(_ certificate: ACMECertificate) async throws -> Bool {
        guard let shared, let text = try await shared.get(sharedKey(certificate)) else { return false }
        guard let split = text.range(of: "-----BEGIN CERTIFICATE-----") else { return false }
        let (keyText, chain) = (String(text[..<split.lowerBound]), String(text[split.lowerBound...]))
        guard let leaf = try? Self.leaf(of: chain), let key = try? P256.Signing.PrivateKey(pemRepresentation: keyText),
            leaf.publicKey == Certificate.PublicKey(key.publicKey), Set(TLSCheck.coveredNames(leaf)) == Set(certificate.names)
        else {
            logger.warning("acme: the shared copy of the certificate is unusable; ignored", metadata: ["names": "\(certificate.names.joined(separator: ","))"])
            return false
        }
        let local = Self.state(of: certificate)
        guard local.placeholder || Set(local.names) != Set(certificate.names) || leaf.notValidAfter > local.notAfter else { return false }
        try Self.write(keyText, to: certificate.key, mode: 0o600)
        try Self.write(chain, to: certificate.cert, mode: 0o644)
        logger.info(
            "acme: certificate taken from the shared store",
            metadata: ["names": "\(certificate.names.joined(separator: ","))", "not_after": "\(leaf.notValidAfter)"])
        return true
    }

    /// One order: a new key, its CSR, the CA's chain; written only once the chain is there and names that key.
    private func obtain(_ certificate: ACMECertificate, from client: ACMEClient) async -> Result<Void, ACMEProblem> {
        let names = certificate.names.joined(separator: ",")
        logger.info("acme: requesting a certificate", metadata: ["names": "\(names)", "directory": "\(config.directoryURL)"])
        do {
            let key = P256.Signing.PrivateKey()
            let request = try CertificateSigningRequest(
                version: .v1, subject: try DistinguishedName { CommonName(certificate.names[0]) }, privateKey: Certificate.PrivateKey(key),
                attributes: try CertificateSigningRequest.Attributes([
                    .init(ExtensionRequest(extensions: try Certificate.Extensions { SubjectAlternativeNames(certificate.names.map { .dnsName($0) }) }))
                ]),
                signatureAlgorithm: .ecdsaWithSHA256)
            var serializer = DER.Serializer()
            try serializer.serialize(request)
            let chain = try await client.certificate(for: certificate.names, csr: serializer.serializedBytes, challenges: challenges)
            let leaf = try Self.leaf(of: chain)
            guard leaf.publicKey == Certificate.PublicKey(key.publicKey) else {
                throw ACMEProblem(status: 0, type: "", detail: "the issued certificate does not carry the requested key")
            }
            try Self.write(key.pemRepresentation, to: certificate.key, mode: 0o600)
            try Self.write(chain, to: certificate.cert, mode: 0o644)
            if let shared {
                do {
                    try await shared.set(sharedKey(certificate), to: key.pemRepresentation + "\n" + chain, expiringAfter: nil, onlyIfAbsent: false)
                } catch {
                    // This instance serves it; the others order their own once the lock is released.
                    logger.error("acme: the new certificate could not be shared", metadata: ["names": "\(names)", "error": "\(error)"])
                }
            }
            metrics.counter("gateway_acme_orders_total", [("outcome", "issued")]).increment()
            logger.info(
                "acme: certificate issued",
                metadata: ["names": "\(names)", "not_after": "\(leaf.notValidAfter)", "issuer": "\(leaf.issuer)"])
            return .success(())
        } catch {
            metrics.counter("gateway_acme_orders_total", [("outcome", "failed")]).increment()
            logger.error("acme: certificate request failed; the current certificate stays", metadata: ["names": "\(names)", "error": "\(error)"])
            return .failure(error as? ACMEProblem ?? ACMEProblem(status: 0, type: "", detail: "\(error)"))
        }
    }

    // MARK: Files

    /// What the certificate on disk is: its names, its end, whether it is a placeholder (unreadable counts as one).
    static func state(of certificate: ACMECertificate) -> (names: [String], notAfter: Date, placeholder: Bool) {
        guard let text = try? String(contentsOfFile: certificate.cert, encoding: .utf8), let leaf = try? leaf(of: text) else {
            return ([], .distantPast, true)
        }
        let placeholder = leaf.subject.description.contains(placeholderOrganization)
        return (TLSCheck.coveredNames(leaf), leaf.notValidAfter, placeholder)
    }

    /// The first certificate of a PEM chain (the leaf).
    static func leaf(of chain: String) throws -> Certificate {
        guard let first = try PEMDocument.parseMultiple(pemString: chain).first else {
            throw ACMEProblem(status: 0, type: "", detail: "the certificate chain is empty")
        }
        return try Certificate(pemDocument: first)
    }

    /// A self-signed certificate for the names, valid a week: the listener starts with it, clients see an untrusted
    /// certificate until the CA's arrives (seconds to minutes).
    static func writePlaceholder(_ certificate: ACMECertificate) throws {
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName {
            OrganizationName(placeholderOrganization)
            CommonName(certificate.names[0])
        }
        let now = Date()
        let placeholder = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: Certificate.PublicKey(key.publicKey),
            notValidBefore: now - 60, notValidAfter: now + 7 * 86400, issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions { SubjectAlternativeNames(certificate.names.map { .dnsName($0) }) },
            issuerPrivateKey: Certificate.PrivateKey(key))
        try write(key.pemRepresentation, to: certificate.key, mode: 0o600)
        try write(try placeholder.serializeAsPEM().pemString + "\n", to: certificate.cert, mode: 0o644)
    }

    /// The account key in `storage/account-key.pem`, made on first use.
    static func accountKey(in storage: String) throws -> P256.Signing.PrivateKey {
        let path = storage + "/account-key.pem"
        if let text = try? String(contentsOfFile: path, encoding: .utf8) {
            return try P256.Signing.PrivateKey(pemRepresentation: text)
        }
        let key = P256.Signing.PrivateKey()
        try write(key.pemRepresentation, to: path, mode: 0o600)
        return key
    }

    static func makeFolder(_ path: String) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }

    /// Written beside the target, then renamed over it: a reader sees the old file or the new one, never half of one.
    static func write(_ text: String, to path: String, mode: Int) throws {
        let temporary = path + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(text.utf8), attributes: [.posixPermissions: mode]) else {
            throw ACMEProblem(status: 0, type: "", detail: "cannot write \(temporary)")
        }
        guard rename(temporary, path) == 0 else { throw ACMEProblem(status: 0, type: "", detail: "cannot replace \(path)") }
    }
}
