import GatewayConfig
import GatewayCore
import Logging
import ServiceLifecycle
import UnixSignals

/// The gateway as a swift-service-lifecycle service: runs until a graceful shutdown (SIGTERM/SIGINT),
/// then drains.
public struct GatewayService: Service {
    let config: GatewayConfig
    let logger: Logger
    let configPath: String?
    let outputs: LogOutputs?

    public init(config: GatewayConfig, logger: Logger, configPath: String? = nil, outputs: LogOutputs? = nil) {
        self.config = config
        self.logger = logger
        self.configPath = configPath
        self.outputs = outputs
    }

    public func run() async throws {
        let gateway = try await Gateway.start(config: config, logger: logger, accessLogger: outputs?.accessLogger, configPath: configPath)
        outputs?.countDrops(in: gateway.metrics)
        // SIGHUP reloads gateway.json and the TLS certificates; a bad file changes nothing (and is logged).
        let reload = Task {
            for await _ in await UnixSignalsSequence(trapping: .sighup) {
                try? await gateway.reloadFromFile()
            }
        }
        // SIGUSR1 reopens the log files (after logrotate renamed them), as for NGINX.
        let reopen = Task { [outputs, logger] in
            for await _ in await UnixSignalsSequence(trapping: .sigusr1) {
                outputs?.reopen()
                logger.notice("log files reopened")
            }
        }
        // Returns on graceful shutdown; throws on cancellation. Either way we drain.
        try? await gracefulShutdown()
        reload.cancel()
        reopen.cancel()
        await gateway.shutdown()
    }
}

/// The process's log outputs (`logging.file`, `logging.access_log_file`, `logging.syslog`, or standard output), each written
/// by its own thread.
public struct LogOutputs: Sendable {
    public let main: LogWriter
    public let access: LogWriter?
    public let level: Logger.Level
    /// `logging.access_log_format`, as the process started with it.
    public let accessFormat: LoggingConfig.AccessLogFormat

    /// Opens the configured outputs; throws when a file cannot be opened.
    public init(_ config: LoggingConfig) throws {
        level = Logger.Level(rawValue: config.level.rawValue) ?? .info
        // Decoding has ruled out syslog beside the file it would replace.
        let syslog = config.syslog.map { (LogWriter.Destination.syslog($0), $0.lines) }
        let mainDestination = syslog?.1 == .all ? syslog?.0 : config.file.map(LogWriter.Destination.file)
        let accessDestination = syslog?.1 == .access ? syslog?.0 : config.accessLogFile.map(LogWriter.Destination.file)
        main = try LogWriter(mainDestination ?? .standardOutput, capacity: config.bufferBytes)
        access = try accessDestination.map { try LogWriter($0, capacity: config.bufferBytes) }
        accessFormat = config.accessLogFormat
    }

    /// Standard output only (before a config is known, or when its files cannot be opened).
    public init(level: Logger.Level) throws {
        self.level = level
        main = try LogWriter(.standardOutput)
        access = nil
        accessFormat = .json
    }

    public func handler(label: String) -> JSONLogHandler { JSONLogHandler(label: label, level: level, sink: .init(writer: main)) }

    /// A logger for access-log lines when they have a file or a format of their own (nil: the main logger's).
    public var accessLogger: Logger? {
        guard access != nil || accessFormat == .combined else { return nil }
        let sink = JSONLogHandler.Sink(writer: access ?? main)
        switch accessFormat {
        case .json: return Logger(label: "gateway") { [level] in JSONLogHandler(label: $0, level: level, sink: sink) }
        case .combined: return Logger(label: "gateway") { [level] _ in LineLogHandler(level: level, sink: sink) }
        }
    }

    func countDrops(in metrics: GatewayMetrics) {
        for (writer, name) in [(main, "log"), (access, "access_log")] {
            guard let writer else { continue }
            let counter = metrics.counter("gateway_log_lines_dropped_total", [("output", name)])
            writer.onDrop { counter.increment(by: $0) }
        }
    }

    func reopen() {
        main.reopen()
        access?.reopen()
    }

    /// Writes out what is queued (at exit).
    public func flush() {
        main.flush()
        access?.flush()
    }
}
