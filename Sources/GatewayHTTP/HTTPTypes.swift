import NIOCore

/// A request method. The common ones are enum cases (no allocation when parsed); others keep their text.
public enum HTTPMethod: Hashable, Sendable, CustomStringConvertible {
    case GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, CONNECT, TRACE
    case other(String)

    public init(_ name: String) {
        switch name {
        case "GET": self = .GET
        case "HEAD": self = .HEAD
        case "POST": self = .POST
        case "PUT": self = .PUT
        case "DELETE": self = .DELETE
        case "PATCH": self = .PATCH
        case "OPTIONS": self = .OPTIONS
        case "CONNECT": self = .CONNECT
        case "TRACE": self = .TRACE
        default: self = .other(name)
        }
    }

    /// RFC 9110 §9.2.2: repeating the request has the same effect as sending it once, so a proxy may retry it.
    public var isIdempotent: Bool {
        switch self {
        case .GET, .HEAD, .OPTIONS, .TRACE, .PUT, .DELETE: return true
        case .POST, .PATCH, .CONNECT, .other: return false
        }
    }

    /// RFC 9110 §9.2.1: the method asks for nothing to change (a cache may answer it; others invalidate).
    public var isSafe: Bool {
        switch self {
        case .GET, .HEAD, .OPTIONS, .TRACE: return true
        default: return false
        }
    }

    /// Parses the method token from raw bytes without allocating for the well-known methods.
    init(bytes: UnsafeRawBufferPointer) {
        switch bytes.count {
        case 3 where bytes.elementsEqual("GET".utf8): self = .GET
        case 3 where bytes.elementsEqual("PUT".utf8): self = .PUT
        case 4 where bytes.elementsEqual("POST".utf8): self = .POST
        case 4 where bytes.elementsEqual("HEAD".utf8): self = .HEAD
        case 5 where bytes.elementsEqual("PATCH".utf8): self = .PATCH
        case 5 where bytes.elementsEqual("TRACE".utf8): self = .TRACE
        case 6 where bytes.elementsEqual("DELETE".utf8): self = .DELETE
        case 7 where bytes.elementsEqual("OPTIONS".utf8): self = .OPTIONS
        case 7 where bytes.elementsEqual("CONNECT".utf8): self = .CONNECT
        default: self = .other(String(decoding: bytes, as: UTF8.self))
        }
    }

    public var name: String {
        switch self {
        case .GET: return "GET"
        case .HEAD: return "HEAD"
        case .POST: return "POST"
        case .PUT: return "PUT"
        case .DELETE: return "DELETE"
        case .PATCH: return "PATCH"
        case .OPTIONS: return "OPTIONS"
        case .CONNECT: return "CONNECT"
        case .TRACE: return "TRACE"
        case .other(let name): return name
        }
    }

    public var description: String { name }
}

public struct HTTPVersion: Hashable, Sendable, CustomStringConvertible {
    public var major: UInt8
    public var minor: UInt8

    public init(major: UInt8, minor: UInt8) {
        self.major = major
        self.minor = minor
    }

    public static let http1_0 = HTTPVersion(major: 1, minor: 0)
    public static let http1_1 = HTTPVersion(major: 1, minor: 1)
    public static let http2 = HTTPVersion(major: 2, minor: 0)

    public var description: String { "HTTP/\(major).\(minor)" }
}

/// A request line and its header fields.
public struct RequestHead: Sendable {
    public var method: HTTPMethod
    /// The request target as received: origin form (`/path?query`) or, rarely, absolute form.
    public var target: String
    public var version: HTTPVersion
    public var headers: HeaderList

    public init(method: HTTPMethod, target: String, version: HTTPVersion = .http1_1, headers: HeaderList = HeaderList()) {
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
    }

    /// The target's path (before `?`).
    public var path: Substring {
        let target = self.target
        return target.utf8.firstIndex(of: UInt8(ascii: "?")).map { target[..<$0] } ?? Substring(target)
    }

    /// The target's query (after `?`; "" when there is none).
    public var query: Substring {
        let target = self.target
        return target.utf8.firstIndex(of: UInt8(ascii: "?")).map { target[target.index(after: $0)...] } ?? ""
    }

    /// Whether the client wants the connection kept open (HTTP/1.1 unless `close`; HTTP/1.0 only with `keep-alive`).
    public var wantsKeepAlive: Bool {
        let tokens = headers.connectionTokens
        if version.major == 1 && version.minor == 0 { return tokens.keepAlive && !tokens.close }
        return !tokens.close
    }
}

/// A status line and its header fields.
public struct ResponseHead: Sendable {
    public var status: Int
    /// The reason phrase; nil means the standard one for the status.
    public var reason: String?
    public var version: HTTPVersion
    public var headers: HeaderList

    public init(status: Int, reason: String? = nil, version: HTTPVersion = .http1_1, headers: HeaderList = HeaderList()) {
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers
    }

    public var reasonPhrase: String { reason ?? HTTPStatusText.reason(for: status) }

    /// Whether the upstream lets the connection be reused after this response.
    public var allowsKeepAlive: Bool {
        let tokens = headers.connectionTokens
        if version.major == 1 && version.minor == 0 { return tokens.keepAlive && !tokens.close }
        return !tokens.close
    }
}

public enum HTTPStatusText {
    public static func reason(for status: Int) -> String {
        switch status {
        case 100: return "Continue"
        case 101: return "Switching Protocols"
        case 103: return "Early Hints"
        case 200: return "OK"
        case 201: return "Created"
        case 202: return "Accepted"
        case 204: return "No Content"
        case 206: return "Partial Content"
        case 301: return "Moved Permanently"
        case 302: return "Found"
        case 303: return "See Other"
        case 304: return "Not Modified"
        case 307: return "Temporary Redirect"
        case 308: return "Permanent Redirect"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 408: return "Request Timeout"
        case 409: return "Conflict"
        case 413: return "Content Too Large"
        case 414: return "URI Too Long"
        case 415: return "Unsupported Media Type"
        case 429: return "Too Many Requests"
        case 431: return "Request Header Fields Too Large"
        case 499: return "Client Closed Request"
        case 500: return "Internal Server Error"
        case 501: return "Not Implemented"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        case 505: return "HTTP Version Not Supported"
        default: return ""
        }
    }
}
