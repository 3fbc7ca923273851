import GatewayConfig
import Logging
import ServiceLifecycle
import UnixSignals

/// The gateway as a swift-service-lifecycle service: runs until a graceful shutdown (SIGTERM/SIGINT),
/// then drains.
public struct GatewayService: Service {
    let config: GatewayConfig
    let logger: Logger

    public init(config: GatewayConfig, logger: Logger) {
        self.config = config
        self.logger = logger
    }

    public func run() async throws {
        let gateway = try await Gateway.start(config: config, logger: logger)
        // SIGHUP reloads the TLS certificates (new handshakes use them; open connections keep theirs).
        let reload = Task {
            for await _ in await UnixSignalsSequence(trapping: .sighup) {
                gateway.reloadCertificates()
            }
        }
        // Returns on graceful shutdown; throws on cancellation. Either way we drain.
        try? await gracefulShutdown()
        reload.cancel()
        await gateway.shutdown()
    }
}
