import GatewayConfig
import Logging
import ServiceLifecycle
import UnixSignals

/// The gateway as a swift-service-lifecycle service: runs until a graceful shutdown (SIGTERM/SIGINT),
/// then drains.
public struct GatewayService: Service {
    let config: GatewayConfig
    let logger: Logger
    let configPath: String?

    public init(config: GatewayConfig, logger: Logger, configPath: String? = nil) {
        self.config = config
        self.logger = logger
        self.configPath = configPath
    }

    public func run() async throws {
        let gateway = try await Gateway.start(config: config, logger: logger, configPath: configPath)
        // SIGHUP reloads gateway.json and the TLS certificates; a bad file changes nothing (and is logged).
        let reload = Task {
            for await _ in await UnixSignalsSequence(trapping: .sighup) {
                try? await gateway.reloadFromFile()
            }
        }
        // Returns on graceful shutdown; throws on cancellation. Either way we drain.
        try? await gracefulShutdown()
        reload.cancel()
        await gateway.shutdown()
    }
}
