import Foundation

/// Throwaway certificates for TLS tests, made with the openssl CLI in a temporary folder (nothing secret is
/// ever committed): a CA, certificates it signs for given names, and client certificates.
public final class TestPKI: @unchecked Sendable {
    // @unchecked: used by one test at a time; the files are written once per call.
    public let directory: URL
    public let name: String

    /// A new CA called `name` (its key and certificate are `<name>-ca-key.pem` and `<name>-ca.pem`).
    public init(name: String = "test") throws {
        self.name = name
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("pki-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try Self.openssl(
            ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30",
             "-keyout", path("\(name)-ca-key.pem"), "-out", path("\(name)-ca.pem"), "-subj", "/CN=\(name) test CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            in: directory)
    }

    deinit { try? FileManager.default.removeItem(at: directory) }

    public var caFile: String { path("\(name)-ca.pem") }

    public func path(_ file: String) -> String { directory.appendingPathComponent(file).path }

    /// Issues a server certificate for `names` (DNS names or IPs) into `<file>.pem` / `<file>-key.pem`.
    /// `rsa: true` makes an RSA 2048 key instead of ECDSA P-256.
    @discardableResult
    public func issueServer(_ file: String, names: [String], rsa: Bool = false) throws -> (cert: String, key: String) {
        let san = names.map { $0.allSatisfy { $0.isNumber || $0 == "." } ? "IP:\($0)" : "DNS:\($0)" }.joined(separator: ",")
        return try issue(file, subject: "/CN=\(names.first ?? "server")", extensions: "subjectAltName=\(san)\nextendedKeyUsage=serverAuth", rsa: rsa)
    }

    /// Issues a client certificate with `subject` (e.g. "/CN=client-1/O=Example"), and a URI name (a SPIFFE ID) if given.
    @discardableResult
    public func issueClient(_ file: String, subject: String, uri: String? = nil) throws -> (cert: String, key: String) {
        try issue(file, subject: subject, extensions: "extendedKeyUsage=clientAuth" + (uri.map { "\nsubjectAltName=URI:\($0)" } ?? ""), rsa: false)
    }

    private func issue(_ file: String, subject: String, extensions: String, rsa: Bool) throws -> (cert: String, key: String) {
        let key = path("\(file)-key.pem")
        let cert = path("\(file).pem")
        let request = path("\(file).csr")
        let extFile = path("\(file).ext")
        try extensions.write(toFile: extFile, atomically: true, encoding: .utf8)
        let keyArguments = rsa ? ["-newkey", "rsa:2048"] : ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        try Self.openssl(["req", "-new"] + keyArguments + ["-nodes", "-keyout", key, "-out", request, "-subj", subject], in: directory)
        try Self.openssl(
            ["x509", "-req", "-in", request, "-CA", caFile, "-CAkey", path("\(name)-ca-key.pem"), "-CAcreateserial",
             "-days", "30", "-out", cert, "-extfile", extFile],
            in: directory)
        return (cert, key)
    }

    /// Revokes the certificates in `files` (more may be revoked by later calls), then writes this CA's revocation list
    /// with every certificate revoked so far to `<file>` (PEM, or DER), valid until `nextUpdate` (openssl's
    /// `YYYYMMDDHHMMSSZ`; 7 days from now when nil).
    @discardableResult
    public func revocationList(revoking files: [String], into file: String, der: Bool = false, nextUpdate: String? = nil) throws -> String {
        let config = path("ca.cnf")
        if !FileManager.default.fileExists(atPath: config) {
            try "[ca]\ndefault_ca = test\n[test]\ndatabase = index.txt\ncrlnumber = crlnumber\ndefault_md = sha256\ndefault_crl_days = 7\n"
                .write(toFile: config, atomically: true, encoding: .utf8)
            try "".write(toFile: path("index.txt"), atomically: true, encoding: .utf8)
            try "01\n".write(toFile: path("crlnumber"), atomically: true, encoding: .utf8)
        }
        let signer = ["-config", config, "-keyfile", path("\(name)-ca-key.pem"), "-cert", caFile]
        for revoked in files { try Self.openssl(["ca"] + signer + ["-revoke", revoked], in: directory) }
        let pem = path(file + ".pem")
        try Self.openssl(["ca"] + signer + ["-gencrl", "-out", pem] + (nextUpdate.map { ["-crl_nextupdate", $0] } ?? []), in: directory)
        guard der else { return pem }
        let out = path(file + ".der")
        try Self.openssl(["crl", "-in", pem, "-outform", "DER", "-out", out], in: directory)
        return out
    }

    public struct OpenSSLFailed: Error, CustomStringConvertible {
        public let arguments: [String]
        public let output: String
        public var description: String { "openssl \(arguments.joined(separator: " ")) failed: \(output)" }
    }

    public static func openssl(_ arguments: [String], in directory: URL) throws {
        let (status, output) = try runToCompletion("/usr/bin/openssl", arguments, in: directory)
        guard status == 0 else { throw OpenSSLFailed(arguments: arguments, output: output) }
    }
}
