import Foundation

/// An upstream that checks AWS Signature Version 4 the way AWS does, with AWS's own SDK code (botocore, Debian
/// `python3-botocore`): each request's signature is computed again from what arrived, and the answer says whether it
/// matched (200) or not (403, as AWS answers), with the `x-amz-*` fields, the Host and the body's size it saw.
public final class AWSVerifier: @unchecked Sendable {
    // @unchecked: the Process is only touched by the test that owns this server, one call at a time.
    public let port: Int
    private let process: Process
    private let log: URL

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil, region: String, service: String) async throws {
        port = try await RedisServer.freePort()
        log = FileManager.default.temporaryDirectory.appendingPathComponent("aws-verifier-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", Self.script, String(port), accessKeyID, secretAccessKey, sessionToken ?? "", region, service]
        let output = try FileHandle(forWritingTo: log)
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline {
            if logText.contains("ready") { return }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw RedisServerError("the AWS verifier did not start: \(logText)")
    }

    deinit {
        if process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL) }
        try? FileManager.default.removeItem(at: log)
    }

    public var logText: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    static let script = #"""
import hashlib, json, sys, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from botocore.auth import SigV4Auth, S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

port, key, secret, token, region, service = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] or None, sys.argv[5], sys.argv[6]
credentials = Credentials(key, secret, token)

def verify(method, path, headers, body):
    authorization = headers.get("authorization", "")
    if not authorization.startswith("AWS4-HMAC-SHA256 "):
        return "no AWS4-HMAC-SHA256 authorization"
    parts = dict(item.strip().split("=", 1) for item in authorization[len("AWS4-HMAC-SHA256 "):].split(","))
    scope = parts["Credential"].split("/")
    if scope[0] != key or scope[2] != region or scope[3] != service:
        return "wrong credential scope " + parts["Credential"]
    stamp = headers.get("x-amz-date", "")
    signed_at = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    if abs((datetime.datetime.now(datetime.timezone.utc) - signed_at).total_seconds()) > 300:
        return "x-amz-date too far from now"
    signed = parts["SignedHeaders"].split(";")
    request = AWSRequest(method=method, url="http://" + headers["host"] + path, headers={name: headers[name] for name in signed}, data=body)
    request.context["timestamp"] = stamp
    auth = (S3SigV4Auth if service == "s3" else SigV4Auth)(credentials, service, region)
    if service == "s3":
        claimed = headers.get("x-amz-content-sha256", "")
        if claimed != "UNSIGNED-PAYLOAD" and claimed != hashlib.sha256(body).hexdigest():
            return "x-amz-content-sha256 is not the body's hash"
        auth.payload = lambda request: claimed
    canonical = auth.canonical_request(request)
    expected = auth.signature(auth.string_to_sign(request, canonical), request)
    return None if expected == parts["Signature"] else "signature mismatch; canonical request:\n" + canonical

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self):
        headers = {name.lower(): value for name, value in self.headers.items()}
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = self.rfile.read(int(headers.get("content-length") or 0))
        problem = verify(self.command, self.path, headers, body)
        reply = json.dumps({"verified": problem is None, "problem": problem, "host": headers.get("host"),
                            "amz": sorted(name for name in headers if name.startswith("x-amz-")),
                            "authorization_scheme": headers.get("authorization", "").split(" ")[0],
                            "body_bytes": len(body)}).encode()
        self.send_response(200 if problem is None else 403)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)
    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = answer
    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
print("ready", flush=True)
server.serve_forever()
"""#
}
