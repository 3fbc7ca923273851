import ArgumentParser
import Foundation
import GatewayAuth
import GatewayConfig
import GatewayCore
import GatewayGeo
import GatewayTLS
import Logging
import ServiceLifecycle

public enum GatewayVersion {
    public static let current = "0.1.0"
}

/// `gateway run | check | explain | openapi | hash-key | hash-password | version`.
public struct GatewayCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "An API gateway and reverse proxy.",
        subcommands: [RunCommand.self, CheckCommand.self, ExplainCommand.self, OpenAPICommand.self, HashKeyCommand.self, HashPasswordCommand.self, VersionCommand.self],
        defaultSubcommand: RunCommand.self
    )

    public init() {}
}

public struct RunCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(commandName: "run", abstract: "Run the gateway (the default).")

    @Option(name: .shortAndLong, help: "Path to gateway.json.")
    var config = "gateway.json"

    public init() {}

    public func run() async throws { try await execute() }

    /// Named apart from `run()` so callers can never pick ParsableCommand's synchronous default by overload.
    public func execute() async throws {
        // A log reader that goes away (the pipe's other end) must not kill the gateway: writes then fail with
        // EPIPE and the lines are counted as dropped. Sockets never raise it (NIO sends with MSG_NOSIGNAL).
        signal(SIGPIPE, SIG_IGN)
        let result = await ConfigCheck.load(path: config)
        let outputs: LogOutputs
        var outputError: (any Error)?
        do {
            outputs = try result.config.map { try LogOutputs($0.logging) } ?? LogOutputs(level: .info)
        } catch {
            outputError = error
            outputs = try LogOutputs(level: .info)
        }
        LoggingSystem.bootstrap(outputs.handler)
        let logger = Logger(label: "gateway")
        defer { outputs.flush() }
        if let outputError {
            logger.critical("not starting: \(outputError)")
            throw ExitCode(1)
        }
        for warning in result.warnings {
            logger.warning("config warning", metadata: ["path": "\(warning.path)", "detail": "\(warning.message)"])
        }
        guard let gatewayConfig = result.config else {
            for error in result.errors {
                logger.error("config error", metadata: ["path": "\(error.path)", "detail": "\(error.message)"])
            }
            logger.critical("not starting: \(config) has \(result.errors.count) error(s); run `gateway check --config \(config)`")
            throw ExitCode(1)
        }
        let group = ServiceGroup(
            configuration: .init(
                services: [GatewayService(config: gatewayConfig, logger: logger, configPath: config, outputs: outputs)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        do {
            try await group.run()
        } catch {
            logger.critical("gateway failed", metadata: ["error": "\(error)"])
            throw ExitCode(1)
        }
    }
}

public struct CheckCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate a config file: print every problem with its JSON path, or `ok`.")

    @Option(name: .shortAndLong, help: "Path to gateway.json.")
    var config = "gateway.json"

    public init() {}

    public func run() async throws { try await execute() }

    public func execute() async throws {
        let result = await ConfigCheck.load(path: config)
        for diagnostic in result.diagnostics { print(diagnostic) }
        guard result.errors.isEmpty else { throw ExitCode(1) }
        print("ok")
    }
}

/// The config as `run` and `check` see it: gateway.json's own rules, then the files and keys it names
/// (certificates and keys must exist, parse and match; JWT keys must load; the htpasswd file must hold users
/// with accepted hashes; log files must be writable where they are to be made).
enum ConfigCheck {
    static func load(path: String) async -> ConfigLoadResult {
        let result = ConfigLoader.load(path: path)
        guard let config = result.config else { return result }
        var findings = TLSCheck.findings(config).map { (path: $0.path, message: $0.message, isError: $0.isError) }
        for (key, file) in [("database", config.geoip?.database), ("asn_database", config.geoip?.asnDatabase)] {
            guard let file else { continue }
            do { _ = try GeoIPDatabase(path: file) } catch { findings.append(("geoip." + key, "\(error)", true)) }
        }
        if let jwt = config.auth?.jwt { findings += await KeyLoader.findings(jwt) }
        // The API keys file: valid entries, no key listed twice.
        var keyFileIDs: Set<String> = []
        if let auth = config.auth {
            let (keys, problems) = APIKeyTable.configuredKeys(auth)
            findings += problems
            keyFileIDs = Set((keys ?? []).map(\.id))
        }
        if let auth = config.auth, let basic = auth.basic {
            // The htpasswd file: readable, every line a user and an accepted hash, no name taken twice.
            do {
                _ = try BasicUsers.load(basic, otherConsumers: auth.keyAndCertificateIDs.union(keyFileIDs))
            } catch let error as KeyLoader.KeyError {
                findings.append((error.path, error.message, true))
            } catch {
                findings.append(("auth.basic", "\(error)", true))
            }
        }
        if let tokens = config.auth?.upstreamToken {
            do {
                _ = try await UpstreamTokenSigner.load(tokens)
            } catch let error as UpstreamTokenSigner.KeyError {
                findings.append((error.path, error.message, true))
            } catch {
                findings.append(("auth.upstream_token", "\(error)", true))
            }
        }
        // Log files: their folder must exist and take files (the files themselves are created at start).
        for (key, file) in [("file", config.logging.file), ("access_log_file", config.logging.accessLogFile)] {
            guard let file else { continue }
            let folder = (file as NSString).deletingLastPathComponent
            if access(folder.isEmpty ? "." : folder, W_OK | X_OK) != 0 {
                findings.append(("logging.\(key)", "cannot create or write \(file): \(String(cString: strerror(errno)))", true))
            }
        }
        // Syslog: what would stop the start (a name that does not resolve, a local socket with no daemon behind it).
        if let syslog = config.logging.syslog, let problem = SyslogOutput.problem(reaching: syslog) {
            findings.append(("logging.syslog.address", problem, true))
        }
        guard !findings.isEmpty else { return result }
        let diagnostics = result.diagnostics + findings.map { Diagnostic(path: $0.path, message: $0.message, severity: $0.isError ? .error : .warning) }
        return ConfigLoadResult(config: findings.contains(where: \.isError) ? nil : config, diagnostics: diagnostics)
    }
}

/// `gateway hash-key`: the SHA-256 to put in `auth.api_keys[].sha256` for a key read from stdin, or with
/// `--generate` a new random key and its hash. Keys are never taken as arguments (they would land in shell
/// history and process lists).
public struct HashKeyCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "hash-key", abstract: "Print the SHA-256 of an API key read from stdin (or --generate a new key).")

    @Flag(help: "Make a new random key and print it with its hash.")
    var generate = false

    public init() {}

    public func run() throws {
        if generate {
            let key = APIKeyTable.generateKey()
            print("key:    \(key)")
            print("sha256: \(APIKeyTable.digestHex(of: key))")
            return
        }
        guard let line = readLine(strippingNewline: true), !line.isEmpty else {
            throw ValidationError("expected the key on stdin (for example: printf %s \"$KEY\" | gateway hash-key)")
        }
        print(APIKeyTable.digestHex(of: line))
    }
}

/// `gateway hash-password`: a bcrypt hash for `auth.basic.users[].password_hash` (or, with `--user`, an
/// htpasswd line) of a password read from stdin, never from the arguments.
public struct HashPasswordCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "hash-password", abstract: "Print a bcrypt hash of a password read from stdin, for auth.basic.")

    @Option(help: "bcrypt cost: 2^cost rounds (each step doubles the time of every check, and of every guess).")
    var cost = 10

    @Option(help: "Print an htpasswd line for this user instead of the bare hash.")
    var user: String?

    public init() {}

    public func validate() throws {
        guard (4...31).contains(cost) else { throw ValidationError("--cost must be between 4 and 31") }
        if let user, user.isEmpty || user.contains(":") { throw ValidationError("--user must be a name without a colon") }
    }

    public func run() throws {
        guard let password = readLine(strippingNewline: true), !password.isEmpty else {
            throw ValidationError("expected the password on stdin (for example: read -rs PW; printf %s \"$PW\" | gateway hash-password)")
        }
        guard let hash = PasswordHash.make(password, cost: cost) else { throw ValidationError("this system's libcrypt could not make a bcrypt hash") }
        print(user.map { "\($0):\(hash)" } ?? hash)
    }
}

public struct VersionCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(commandName: "version", abstract: "Print the version.")

    public init() {}

    public func run() { print("gateway \(GatewayVersion.current)") }
}
