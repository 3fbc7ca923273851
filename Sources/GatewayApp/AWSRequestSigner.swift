import Foundation
import GatewayAuth
import GatewayConfig
import GatewayCore
import GatewayHTTP

/// `upstreams.<name>.aws_sigv4`: signs every request to the upstream with AWS Signature Version 4, as the AWS SDKs do,
/// so a private S3 bucket, a Lambda function URL or an IAM-protected API Gateway stage can sit behind the gateway without
/// its clients holding AWS credentials.
///
/// The request's `Host` is set to the upstream's endpoint and signed with `x-amz-date` (and S3's `x-amz-content-sha256`);
/// a body that streams is `UNSIGNED-PAYLOAD` (S3 only), a buffered one is hashed. Fields starting with `x-amz-` are
/// removed from what the client sent before signing: signed by the gateway they would ask AWS for things with its
/// credentials that the route never meant to allow (`x-amz-copy-source` copies another object into the bucket).
final class AWSRequestSigner: UpstreamCredentials {
    let config: UpstreamAWSSigV4Config
    /// The `Host` the endpoint is addressed by (its port only when not the scheme's default).
    let host: String
    private let credentials: AWSSignatureV4.Credentials
    /// The clock (a test's fixed date).
    private let now: @Sendable () -> Date

    init(config: UpstreamAWSSigV4Config, target: UpstreamTarget, now: @escaping @Sendable () -> Date = Date.init) {
        self.config = config
        let defaultPort = target.scheme == .https ? 443 : 80
        let name = target.host.contains(":") ? "[\(target.host)]" : target.host
        host = target.port == defaultPort ? name : "\(name):\(target.port)"
        credentials = AWSSignatureV4.Credentials(
            accessKeyID: config.accessKeyID, secretAccessKey: config.secretAccessKey, sessionToken: config.sessionToken)
        self.now = now
    }

    var isAvailable: Bool { true }
    var setsHost: Bool { true }

    func authorize(_ head: inout RequestHead, body: UpstreamBody) {
        head.headers.replaceOrAdd(name: "host", value: host)
        head.headers.remove(name: "authorization")
        for name in Set(head.headers.map { $0.name.lowercased() }.filter { $0.hasPrefix("x-amz-") }) { head.headers.remove(name: name) }
        let payloadHash: String
        switch body {
        case .none: payloadHash = AWSSignatureV4.emptyPayload
        case .whole(let parts): payloadHash = AWSSignatureV4.hash(parts.map { Array($0.readableBytesView) })
        case .streamed: payloadHash = AWSSignatureV4.unsignedPayload
        }
        let target = head.target
        let question = target.firstIndex(of: "?")
        let added = AWSSignatureV4.sign(
            method: head.method.name, path: String(target[..<(question ?? target.endIndex)]),
            query: question.map { String(target[target.index(after: $0)...]) } ?? "", headers: Array(head.headers),
            payloadHash: payloadHash, region: config.region, service: config.service, credentials: credentials, date: now())
        for field in added { head.headers.add(name: field.name, value: field.value) }
    }

    /// A 403 or 401 from AWS is the signature's verdict on this request; there is nothing to renew.
    func refused() {}
}
