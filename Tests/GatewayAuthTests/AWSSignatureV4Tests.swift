import Foundation
@testable import GatewayAuth
import Testing

/// AWS Signature Version 4 without a network: AWS's own worked example, and the canonical forms of paths and queries.
@Suite struct AWSSignatureV4Tests {
    static let example = AWSSignatureV4.Credentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")

    // The example of AWS's "Signature Version 4 signing process" guide: IAM ListUsers on 2015-08-30 12:36:00 UTC.
    @Test func awsWorkedExample() {
        let added = AWSSignatureV4.sign(
            method: "GET", path: "/", query: "Action=ListUsers&Version=2010-05-08",
            headers: [("Host", "iam.amazonaws.com"), ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"), ("User-Agent", "x")],
            payloadHash: AWSSignatureV4.emptyPayload, region: "us-east-1", service: "iam", credentials: Self.example,
            date: Date(timeIntervalSince1970: 1_440_938_160))
        let fields = Dictionary(uniqueKeysWithValues: added.map { ($0.name, $0.value) })
        #expect(fields["x-amz-date"] == "20150830T123600Z")
        #expect(fields["x-amz-content-sha256"] == nil, "only S3 takes the body's hash as a field")
        #expect(
            fields["authorization"]
                == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        )
    }

    @Test func canonicalForms() {
        #expect(AWSSignatureV4.canonicalQuery("b=2&a=1&a=0&flag&sp=a+b&enc=%7e%2F") == "a=0&a=1&b=2&enc=~%2F&flag=&sp=a%20b")
        #expect(AWSSignatureV4.canonicalQuery("") == "")
        // S3 encodes the path once; other services twice (a %2F in a key stays one character of it).
        #expect(AWSSignatureV4.canonicalPath("/photos/a b%2Fc~.jpg", service: "s3") == "/photos/a%20b%2Fc~.jpg")
        #expect(AWSSignatureV4.canonicalPath("/a b", service: "execute-api") == "/a%2520b")
        #expect(AWSSignatureV4.canonicalPath("", service: "s3") == "/")
        #expect(AWSSignatureV4.trimmed("  a   b  ") == "a b")
        #expect(AWSSignatureV4.emptyPayload == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    // Temporary credentials: the session token is sent and signed; S3 gets the body's hash as a field.
    @Test func sessionTokenAndS3() {
        var credentials = Self.example
        credentials.sessionToken = "token-1"
        let added = AWSSignatureV4.sign(
            method: "PUT", path: "/key", query: "", headers: [("host", "bucket.s3.eu-west-1.amazonaws.com")],
            payloadHash: AWSSignatureV4.unsignedPayload, region: "eu-west-1", service: "s3", credentials: credentials,
            date: Date(timeIntervalSince1970: 1_440_938_160))
        let names = added.map(\.name)
        #expect(names == ["x-amz-date", "x-amz-content-sha256", "x-amz-security-token", "authorization"])
        #expect(added[1].value == "UNSIGNED-PAYLOAD" && added[2].value == "token-1")
        #expect(added[3].value.contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"))
    }
}
