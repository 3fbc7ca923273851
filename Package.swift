// swift-tools-version:6.2
import PackageDescription

// Module layout follows ../shared/DESIGN.md: imports flow downward only
// (Policy -> Config -> Core -> Filters/Upstream/Server -> App -> gateway).
let strict: [SwiftSetting] = [.swiftLanguageMode(.v6), .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]

let nioCore: Target.Dependency = .product(name: "NIOCore", package: "swift-nio")
let nioPosix: Target.Dependency = .product(name: "NIOPosix", package: "swift-nio")
let nioHTTP1: Target.Dependency = .product(name: "NIOHTTP1", package: "swift-nio")
// Locks: NIOLockedValueBox (pthread) rather than Synchronization.Mutex, whose futex ThreadSanitizer cannot see.
let nioLocks: Target.Dependency = .product(name: "NIOConcurrencyHelpers", package: "swift-nio")
let logging: Target.Dependency = .product(name: "Logging", package: "swift-log")
let nioSSL: Target.Dependency = .product(name: "NIOSSL", package: "swift-nio-ssl")
let nioHTTP2: Target.Dependency = .product(name: "NIOHTTP2", package: "swift-nio-http2")

let package = Package(
    name: "gateway",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "gateway", targets: ["gateway"]),
        .executable(name: "demo-upstream", targets: ["demo-upstream"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.0"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        // X509 reads client certificates' subjects and certificate names for `gateway check`.
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.0"),
        // DER for the certificate signing requests ACME orders send (swift-certificates builds them on it).
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.0"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.7.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "4.1.0"..<"6.0.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.0"),
    ],
    targets: [
        .target(name: "GatewayPolicy", swiftSettings: strict),
        .target(name: "GatewayConfig", dependencies: ["GatewayPolicy"], swiftSettings: strict),
        // Redis: hiredis (Debian libhiredis-dev) encodes commands and parses replies; SwiftNIO does the I/O.
        // No pkgConfig: hiredis.pc's -D_FILE_OFFSET_BITS=64 only earns a SwiftPM warning, and the headers
        // and library are on the default paths.
        .systemLibrary(name: "CHiredis", providers: [.apt(["libhiredis-dev"])]),
        .target(
            name: "GatewayRedis", dependencies: [nioLocks, "CHiredis", "GatewayCore", "GatewayPolicy", nioCore, nioPosix, nioSSL, logging],
            swiftSettings: strict),
        // zlib (Debian zlib1g-dev) for gzip-encoded responses.
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CMaxMindDB", pkgConfig: "libmaxminddb", providers: [.apt(["libmaxminddb-dev"])]),
        // Countries of client addresses from a MaxMind DB file (`geoip`).
        .target(name: "GatewayGeo", dependencies: ["CMaxMindDB", "GatewayCore", "GatewayPolicy"], swiftSettings: strict),
        .systemLibrary(name: "CBrotli", pkgConfig: "libbrotlienc", providers: [.apt(["libbrotli-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CCrypt", pkgConfig: "libcrypt", providers: [.apt(["libcrypt-dev"])]),
        // The HTTP/1 codec of the forwarding path: heads kept as received bytes, strict incremental parsing;
        // and the gzip content coding.
        .target(name: "GatewayHTTP", dependencies: [nioCore, "CZlib", "CBrotli", "CZstd"], swiftSettings: strict),
        // The clock read once per event (a thread-local reading; see EventClock).
        .target(name: "CEventClock"),
        // DNS queries through the system resolver (libresolv), or a server of the config's: SRV records for discovery.
        .target(name: "CDNSQuery", linkerSettings: [.linkedLibrary("resolv")]),
        .target(
            name: "GatewayCore",
            dependencies: [nioLocks, "CEventClock", "GatewayPolicy", "GatewayConfig", "GatewayHTTP", nioCore, logging, .product(name: "CoreMetrics", package: "swift-metrics")],
            swiftSettings: strict),
        .target(
            name: "GatewayFilters",
            dependencies: [nioLocks, "GatewayCore", "GatewayPolicy", "GatewayConfig", "GatewayHTTP", logging, .product(name: "CoreMetrics", package: "swift-metrics")],
            swiftSettings: strict),
        // TLS material: server contexts with SNI and reload, upstream client contexts, file checks.
        .target(
            name: "GatewayTLS",
            dependencies: [
                nioLocks, "GatewayConfig", nioCore, nioSSL, logging, .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            swiftSettings: strict),
        // One-shot HTTP requests the gateway makes for itself (JWKS documents, OTLP exports).
        .target(name: "GatewayClient", dependencies: ["GatewayHTTP", nioCore, nioPosix, nioSSL], swiftSettings: strict),
        // Certificates from an ACME CA (RFC 8555): account, orders, HTTP-01 challenges, renewal.
        .target(
            name: "GatewayACME",
            dependencies: [
                nioLocks, "GatewayConfig", "GatewayCore", "GatewayPolicy", "GatewayClient", "GatewayTLS", nioCore, nioSSL, logging,
                .product(name: "Crypto", package: "swift-crypto"), .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            swiftSettings: strict),
        // Request spans exported over OTLP/HTTP (JSON) when configured.
        .target(name: "GatewayTelemetry", dependencies: [nioLocks, "GatewayCore", "GatewayConfig", "GatewayClient", nioCore, logging, .product(name: "CoreMetrics", package: "swift-metrics")], swiftSettings: strict),
        // Authentication: JWT rules of our own over jwt-kit's key types and signature algorithms; API keys
        // as SHA-256 digests (swift-crypto); Basic passwords as crypt(3) hashes (libxcrypt).
        .target(
            name: "GatewayAuth",
            dependencies: [nioLocks, 
                "GatewayCore", "GatewayConfig", "GatewayHTTP", "GatewayPolicy", "GatewayClient", "CCrypt", nioCore, nioPosix, nioSSL, logging,
                .product(name: "JWTKit", package: "jwt-kit"), .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict),
        .target(
            name: "GatewayUpstream",
            dependencies: [
                nioLocks, "GatewayCore", "GatewayPolicy", "GatewayConfig", "GatewayHTTP", "GatewayTLS", nioCore, nioPosix, nioSSL, nioHTTP2,
                .product(name: "NIOTLS", package: "swift-nio"), logging,
            ],
            swiftSettings: strict),
        .target(
            name: "GatewayServer",
            dependencies: [nioLocks, 
                "GatewayCore", "GatewayPolicy", "GatewayConfig", "GatewayHTTP", "GatewayTLS", nioCore, nioPosix, nioSSL, nioHTTP2,
                .product(name: "NIOTLS", package: "swift-nio"), logging, .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: strict),
        .target(
            name: "GatewayApp",
            dependencies: [nioLocks, 
                "GatewayConfig", "GatewayCore", "GatewayFilters", "GatewayPolicy", "GatewayUpstream", "GatewayServer", "GatewayRedis", "GatewayTLS", "GatewayAuth", "GatewayTelemetry", "GatewayACME", "GatewayGeo", "CDNSQuery", nioCore,
                nioPosix,
                logging,
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"), .product(name: "CoreMetrics", package: "swift-metrics"), nioHTTP1,
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "gateway",
            dependencies: ["GatewayApp", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict,
            // Release builds allocate through jemalloc (Debian libjemalloc-dev), as Vapor's deployment template does:
            // a read event that starts hundreds of requests overflows glibc's per-thread cache, and at 1,000
            // connections glibc's malloc and free took 5.5% of the gateway's CPU samples against 1.5% for jemalloc
            // (bench/NOTES.md). Debug and sanitizer builds keep glibc's allocator, which the sanitizers replace.
            linkerSettings: [.linkedLibrary("jemalloc", .when(platforms: [.linux], configuration: .release))]
        ),
        // The demo upstream lives beside the gateway so `make run` and the tests need nothing outside the repo.
        .target(name: "DemoUpstream", dependencies: [nioLocks, nioCore, nioPosix, nioHTTP1, nioHTTP2, nioSSL, .product(name: "NIOWebSocket", package: "swift-nio")], path: "examples/DemoUpstream", swiftSettings: strict),
        .executableTarget(name: "demo-upstream", dependencies: ["DemoUpstream"], path: "examples/demo-upstream", swiftSettings: strict),

        .testTarget(name: "GatewayPolicyTests", dependencies: ["GatewayPolicy", "TestSupport"], swiftSettings: strict),
        .testTarget(
            name: "GatewayACMETests",
            dependencies: ["GatewayACME", "GatewayConfig", "GatewayCore", "GatewayPolicy", "TestSupport", nioPosix, .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict),
        .testTarget(
            name: "GatewayAuthTests", dependencies: ["GatewayAuth", "GatewayConfig", "GatewayCore", "GatewayPolicy", "TestSupport", nioCore, nioPosix, .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict),
        .testTarget(
            name: "GatewayTLSTests",
            dependencies: ["GatewayTLS", "GatewayConfig", "TestSupport", nioSSL, .product(name: "X509", package: "swift-certificates")],
            swiftSettings: strict),
        .testTarget(name: "GatewayHTTPTests", dependencies: ["GatewayHTTP", "TestSupport", nioCore], swiftSettings: strict),
        // Helpers shared by test targets (a throwaway redis-server per test).
        .target(name: "TestSupport", dependencies: [nioCore, nioPosix, "CZlib", "CBrotli", "CZstd"], path: "Tests/TestSupport", swiftSettings: strict),
        .testTarget(
            name: "GatewayRedisTests",
            dependencies: [nioLocks, 
                "GatewayRedis", "GatewayCore", "GatewayFilters", "GatewayPolicy", "GatewayConfig", "GatewayTLS", "TestSupport", nioCore,
                nioPosix, nioSSL, logging,
            ],
            swiftSettings: strict),
        .testTarget(name: "GatewayConfigTests", dependencies: ["GatewayConfig", "GatewayPolicy"], resources: [.copy("Fixtures")], swiftSettings: strict),
        .testTarget(
            name: "GatewayCoreTests",
            dependencies: [
                "GatewayCore", "GatewayFilters", "GatewayConfig", "GatewayPolicy", "GatewayHTTP", "TestSupport", nioCore,
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: strict),
        .testTarget(
            name: "GatewayIntegrationTests",
            dependencies: [nioLocks, 
                "GatewayApp", "GatewayACME", "GatewayConfig", "GatewayCore", "GatewayPolicy", "GatewayUpstream", "GatewayTelemetry", "DemoUpstream", "TestSupport", nioCore, nioPosix, nioSSL,
                nioHTTP1, nioHTTP2, .product(name: "NIOTLS", package: "swift-nio"), logging, .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict),
    ]
)

// Fuzz targets (libFuzzer), only when `make fuzz` asks for them: they have no main of their own (libFuzzer
// brings it), so an ordinary build could not link them.
if Context.environment["GATEWAY_FUZZ"] != nil {
    package.targets += [
        .executableTarget(name: "fuzz-config", dependencies: ["GatewayConfig"], path: "Fuzz/config", swiftSettings: [.swiftLanguageMode(.v6)]),
        .executableTarget(name: "fuzz-http", dependencies: ["GatewayHTTP", nioCore], path: "Fuzz/http", swiftSettings: [.swiftLanguageMode(.v6)]),
    ]
}
