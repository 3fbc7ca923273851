import ArgumentParser
import Foundation
import GatewayConfig

/// `gateway openapi orders.openapi.json --upstream orders > routes.d/orders.json`: routes for an upstream from its
/// OpenAPI 3 description (see `OpenAPIImport`). The routes file goes to standard output (or `--output`); notes on
/// what could not be carried over go to standard error, so a redirect keeps the file clean.
public struct OpenAPICommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "openapi",
        abstract: "Write routes (with body, query, path and header validation) for an upstream from its OpenAPI 3 description (JSON).")

    @Argument(help: "The OpenAPI 3 document (JSON).")
    var file: String

    @Option(help: "The upstream the routes forward to (a name in gateway.json's upstreams).")
    var upstream: String

    @Option(help: "A path prefix the routes are served under (e.g. /api); stripped before forwarding.")
    var prefix: String?

    @Option(name: .customLong("name-prefix"), help: "Put before every route name (e.g. orders-).")
    var namePrefix = ""

    @Flag(name: .customLong("no-validation"), help: "Leave request_validation out.")
    var noValidation = false

    @Option(help: "The auth.require of routes whose operations need credentials, e.g. jwt or jwt,api_key (default: none, and a note).")
    var auth: String?

    @Option(name: .shortAndLong, help: "Write the routes file here instead of standard output.")
    var output: String?

    public init() {}

    private var authMethods: [String] { auth.map { $0.split(separator: ",").map { String($0.trimmingCharacters(in: .whitespaces)) } } ?? [] }

    public func validate() throws {
        if let prefix, !prefix.hasPrefix("/") || prefix.contains("{") { throw ValidationError("--prefix must be a path such as /api") }
        for method in authMethods where RouteAuthConfig.Method(rawValue: method) == nil {
            throw ValidationError("--auth: unknown credential \"\(method)\" (jwt, api_key, mtls, basic, introspection, oidc)")
        }
    }

    public func run() throws {
        guard let data = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read \(file)") }
        var options = OpenAPIImport.Options(upstream: upstream)
        (options.prefix, options.namePrefix, options.validate, options.auth) = (prefix, namePrefix, !noValidation, authMethods)
        let imported: OpenAPIImport.Output
        do {
            imported = try OpenAPIImport.routes(from: String(decoding: data, as: UTF8.self), options: options)
        } catch {
            FileHandle.standardError.write(Data("\(file): \(error.description)\n".utf8))
            throw ExitCode(1)
        }
        for note in imported.notes { FileHandle.standardError.write(Data("note: \(note)\n".utf8)) }
        if !imported.problems.isEmpty {
            for problem in imported.problems { FileHandle.standardError.write(Data("error: \(problem)\n".utf8)) }
            throw ExitCode(1)  // no file that gateway check would refuse
        }
        let text = imported.document.prettyRendered()
        if let output {
            do {
                try text.write(toFile: output, atomically: true, encoding: .utf8)
            } catch {
                throw ValidationError("cannot write \(output): \(error.localizedDescription)")
            }
        } else {
            print(text, terminator: "")
        }
    }
}
