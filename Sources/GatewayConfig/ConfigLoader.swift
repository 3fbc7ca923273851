import Foundation

/// The outcome of reading gateway.json: the config when there are no errors, and every diagnostic.
public struct ConfigLoadResult: Sendable {
    public let config: GatewayConfig?
    public let diagnostics: [Diagnostic]

    public init(config: GatewayConfig?, diagnostics: [Diagnostic]) {
        self.config = config
        self.diagnostics = diagnostics
    }

    public var errors: [Diagnostic] { diagnostics.filter { $0.severity == .error } }
    public var warnings: [Diagnostic] { diagnostics.filter { $0.severity == .warning } }
}

public enum ConfigLoader {
    /// Decodes and validates a document. `config` is nil when any error was found; all errors are reported.
    /// - Parameter baseDirectory: where relative file paths in the config point from (nil: the working directory).
    public static func load(
        text: String,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        baseDirectory: String? = nil
    ) -> ConfigLoadResult {
        let value: JSONValue
        do {
            value = try JSONParser.parse(text)
        } catch {
            return ConfigLoadResult(config: nil, diagnostics: [Diagnostic(path: "", message: "invalid JSON: \(error)")])
        }
        let expansion = ConfigIncludes.expand(value, baseDirectory: baseDirectory)
        let context = DecodingContext(environment: environment, baseDirectory: baseDirectory)
        var config = GatewayConfig.decode(ConfigNode(value: expansion.value, path: .root, context: context))
        config?.source = expansion.value
        config?.includedFiles = expansion.files
        config?.secretFiles = context.secretFiles.map(\.path)
        config?.addressListFiles = context.addressListFiles
        config?.includePatterns = expansion.patterns.filter(ConfigIncludes.isPattern)
        config?.routeOrigins = expansion.routeOrigins
        config?.validate(into: context)
        let diagnostics = expansion.diagnostics + context.diagnostics.map(expansion.relocated)
        let hasErrors = diagnostics.contains { $0.severity == .error }
        return ConfigLoadResult(config: hasErrors ? nil : config, diagnostics: diagnostics)
    }

    public static func load(
        path: String,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> ConfigLoadResult {
        guard let data = FileManager.default.contents(atPath: path) else {
            let reason = FileManager.default.fileExists(atPath: path) ? "cannot be read" : "does not exist"
            return ConfigLoadResult(config: nil, diagnostics: [Diagnostic(path: "", message: "\(path) \(reason)")])
        }
        guard let text = String(data: data, encoding: .utf8) else {
            return ConfigLoadResult(config: nil, diagnostics: [Diagnostic(path: "", message: "\(path) is not UTF-8 text")])
        }
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        return load(text: text, environment: environment, baseDirectory: directory)
    }
}

extension APIKeyConfig {
    /// `auth.api_keys_file`: a JSON array of `api_keys` entries kept apart from gateway.json (written by a
    /// provisioning job, say), read at start and on every reload. Problems are reported at
    /// `auth.api_keys_file[N]...` paths; `keys` is nil when there is any error.
    public static func loadFile(
        path: String, environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> (keys: [APIKeyConfig]?, diagnostics: [Diagnostic]) {
        let at = JSONPath.root / "auth" / "api_keys_file"
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            return (nil, [Diagnostic(path: "\(at)", message: "\(path) cannot be read")])
        }
        let value: JSONValue
        do {
            value = try JSONParser.parse(text)
        } catch {
            return (nil, [Diagnostic(path: "\(at)", message: "\(path) is not valid JSON: \(error)")])
        }
        let context = DecodingContext(environment: environment, baseDirectory: nil)
        let keys = ConfigNode(value: value, path: at, context: context).array(APIKeyConfig.decode)
        let hasErrors = context.diagnostics.contains { $0.severity == .error }
        return (hasErrors ? nil : keys, context.diagnostics)
    }
}
