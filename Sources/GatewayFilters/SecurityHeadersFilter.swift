import GatewayConfig
import GatewayCore
import GatewayHTTP

/// Adds the configured security headers to every response, the gateway's own errors included.
/// HSTS goes only on TLS connections (browsers ignore it over plain HTTP, and it must not be sent there).
public struct SecurityHeadersFilter: GatewayFilter {
    /// Precomputed (name, value) pairs, so a response costs a few appends and no string building.
    private let always: [(String, String)]
    private let hsts: (String, String)?
    private let overrideUpstream: Bool

    public init(_ config: SecurityHeadersConfig) {
        var always: [(String, String)] = []
        if let value = config.contentTypeOptions { always.append(("x-content-type-options", value)) }
        if let value = config.frameOptions { always.append(("x-frame-options", value)) }
        if let value = config.referrerPolicy { always.append(("referrer-policy", value)) }
        if let value = config.contentSecurityPolicy { always.append(("content-security-policy", value)) }
        if let value = config.permissionsPolicy { always.append(("permissions-policy", value)) }
        if let value = config.contentSecurityPolicyReportOnly { always.append(("content-security-policy-report-only", value)) }
        if let value = config.crossOriginOpenerPolicy { always.append(("cross-origin-opener-policy", value)) }
        if let value = config.crossOriginEmbedderPolicy { always.append(("cross-origin-embedder-policy", value)) }
        if let value = config.crossOriginResourcePolicy { always.append(("cross-origin-resource-policy", value)) }
        self.always = always
        self.hsts = config.hstsMaxAgeSeconds.map { maxAge in
            ("strict-transport-security",
             "max-age=\(maxAge)" + (config.hstsIncludeSubdomains ? "; includeSubDomains" : "") + (config.hstsPreload ? "; preload" : ""))
        }
        self.overrideUpstream = config.overrideUpstream
    }

    public func onResponse(_ head: inout ResponseHead, context: RequestContext) {
        for (name, value) in always { set(name, value, in: &head.headers) }
        if context.connection.isTLS, let (name, value) = hsts { set(name, value, in: &head.headers) }
    }

    private func set(_ name: String, _ value: String, in headers: inout HeaderList) {
        if overrideUpstream {
            headers.replaceOrAdd(name: name, value: value)
        } else if !headers.contains(name: name) {
            headers.add(name: name, value: value)
        }
    }
}
