import Crypto
import Foundation

/// AWS Signature Version 4 (`upstreams.<name>.aws_sigv4`): the `Authorization` AWS services (S3, Lambda function URLs,
/// API Gateway with IAM auth, OpenSearch) require of every request. Pure: the date is given, tested against AWS's
/// published example and, over sockets, against botocore.
public enum AWSSignatureV4 {
    public struct Credentials: Sendable, Equatable {
        public var accessKeyID: String
        public var secretAccessKey: String
        /// For temporary credentials (STS): sent as `x-amz-security-token` and signed.
        public var sessionToken: String?
        public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
            (self.accessKeyID, self.secretAccessKey, self.sessionToken) = (accessKeyID, secretAccessKey, sessionToken)
        }
    }

    /// The hash of an empty body.
    public static let emptyPayload = hex(SHA256.hash(data: [UInt8]()))
    /// S3 takes requests whose body is not hashed (it streams through; TLS protects it on the way).
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"

    /// The fields to add to a request (`x-amz-date`, for S3 `x-amz-content-sha256`, `x-amz-security-token`, `authorization`)
    /// so that AWS accepts it. `headers` are the request's fields as they will be sent (Host among them); the ones
    /// signed are `host`, `content-type` and every `x-amz-*`, the others may change on the way without breaking it.
    public static func sign(
        method: String, path: String, query: String, headers: [(name: String, value: String)], payloadHash: String,
        region: String, service: String, credentials: Credentials, date: Date
    ) -> [(name: String, value: String)] {
        let amzDate = timestamp(date)
        let day = String(amzDate.prefix(8))
        var added: [(name: String, value: String)] = [("x-amz-date", amzDate)]
        // S3 requires the body's hash as a field too (other services read it from the signature alone).
        if service == "s3" { added.append(("x-amz-content-sha256", payloadHash)) }
        if let token = credentials.sessionToken { added.append(("x-amz-security-token", token)) }
        var signed: [String: [String]] = [:]
        for (name, value) in headers + added {
            let lower = name.lowercased()
            guard lower == "host" || lower == "content-type" || lower.hasPrefix("x-amz-") else { continue }
            signed[lower, default: []].append(trimmed(value))
        }
        let names = signed.keys.sorted()
        let canonical = [
            method,
            canonicalPath(path, service: service),
            canonicalQuery(query),
            names.map { "\($0):\(signed[$0]!.joined(separator: ","))\n" }.joined(),
            names.joined(separator: ";"),
            payloadHash,
        ].joined(separator: "\n")
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let stringToSign = "AWS4-HMAC-SHA256\n\(amzDate)\n\(scope)\n\(hex(SHA256.hash(data: Array(canonical.utf8))))"
        var key = SymmetricKey(data: Array(("AWS4" + credentials.secretAccessKey).utf8))
        for part in [day, region, service, "aws4_request"] {
            key = SymmetricKey(data: Array(HMAC<SHA256>.authenticationCode(for: Array(part.utf8), using: key)))
        }
        let signature = hex(HMAC<SHA256>.authenticationCode(for: Array(stringToSign.utf8), using: key))
        added.append((
            "authorization",
            "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope), SignedHeaders=\(names.joined(separator: ";")), Signature=\(signature)"
        ))
        return added
    }

    /// `20150830T123600Z`.
    static func timestamp(_ date: Date) -> String {
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(
            format: "%04d%02d%02dT%02d%02d%02dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday), Int(parts.tm_hour),
            Int(parts.tm_min), Int(parts.tm_sec))
    }

    /// The path's segments decoded and encoded again (RFC 3986's unreserved characters stay): S3 once, every other
    /// service twice, as AWS's canonical request says.
    static func canonicalPath(_ path: String, service: String) -> String {
        guard !path.isEmpty else { return "/" }
        let once = path.split(separator: "/", omittingEmptySubsequences: false).map { encode(decode($0)) }.joined(separator: "/")
        guard service != "s3" else { return once }
        return once.split(separator: "/", omittingEmptySubsequences: false).map { encode(Array($0.utf8)) }.joined(separator: "/")
    }

    /// Parameters decoded, encoded again, sorted by name then value; a parameter without `=` has an empty value.
    static func canonicalQuery(_ query: String) -> String {
        guard !query.isEmpty else { return "" }
        let pairs = query.split(separator: "&").map { item -> (String, String) in
            let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let value = parts.count > 1 ? parts[1] : ""
            // A `+` in a query is a space to form decoders; AWS's signers encode a space as %20.
            return (encode(decode(parts[0], plusIsSpace: true)), encode(decode(value, plusIsSpace: true)))
        }
        return pairs.sorted { $0.0 == $1.0 ? $0.1 < $1.1 : $0.0 < $1.0 }.map { "\($0.0)=\($0.1)" }.joined(separator: "&")
    }

    static func decode(_ text: Substring, plusIsSpace: Bool = false) -> [UInt8] {
        let input = Array(text.utf8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(input.count)
        var index = 0
        while index < input.count {
            if input[index] == UInt8(ascii: "%"), index + 2 < input.count, let high = hexValue(input[index + 1]), let low = hexValue(input[index + 2]) {
                bytes.append(high << 4 | low)
                index += 3
                continue
            }
            bytes.append(plusIsSpace && input[index] == UInt8(ascii: "+") ? UInt8(ascii: " ") : input[index])
            index += 1
        }
        return bytes
    }

    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    static func encode(_ bytes: [UInt8]) -> String {
        var text = ""
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                text.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                text += String(format: "%%%02X", byte)
            }
        }
        return text
    }

    /// Leading and trailing spaces removed, inner runs of spaces made one.
    static func trimmed(_ value: String) -> String {
        value.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
    }

    static func hex(_ bytes: some Sequence<UInt8>) -> String {
        bytes.map { String(format: "%02x", $0) }.joined()
    }

    public static func hash(_ parts: [[UInt8]]) -> String {
        var hasher = SHA256()
        for part in parts { hasher.update(data: part) }
        return hex(hasher.finalize())
    }
}
