import Foundation
@testable import GatewayConfig
import Testing

/// `include` on real files in a temporary folder: what is merged and in which order, what a reload watches, and
/// every problem named by its file.
@Suite struct ConfigIncludesTests {
    /// A folder with gateway.json and the files a test writes next to it.
    struct Folder {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("includes-\(UUID().uuidString)").path

        init(_ files: [String: String]) throws {
            try FileManager.default.createDirectory(atPath: path + "/routes.d", withIntermediateDirectories: true)
            for (name, text) in files { try write(name, text) }
        }

        func write(_ name: String, _ text: String) throws { try text.write(toFile: path + "/" + name, atomically: true, encoding: .utf8) }
        func load() -> ConfigLoadResult { ConfigLoader.load(path: path + "/gateway.json", environment: ["ORDERS_PORT": "9001"]) }
        func remove() { try? FileManager.default.removeItem(atPath: path) }
    }

    static func main(include: String, routes: String = #"[{ "name": "home", "upstream": "web" }]"#) -> String {
        """
        { "listeners": [{ "name": "l", "port": 1 }], "include": \(include),
          "upstreams": { "web": { "targets": ["http://127.0.0.1:9"] } },
          "routes": \(routes) }
        """
    }

    // Routes come after gateway.json's own, file by file in name order (hidden files aside); upstreams and services
    // join the map; ${ENV} works in them; the files are what a reload reads again.
    @Test func includedFilesAreMergedInOrder() throws {
        let folder = try Folder([
            "gateway.json": Self.main(include: #"["routes.d/*.json", "auth-services.json"]"#),
            "routes.d/20-billing.json": #"{ "routes": [{ "name": "billing", "match": { "path_prefix": "/billing" }, "upstream": "orders" }] }"#,
            "routes.d/10-orders.json": #"""
                { "upstreams": { "orders": { "targets": ["http://127.0.0.1:${ORDERS_PORT}"] } },
                  "routes": [{ "name": "orders", "match": { "path_prefix": "/orders" }, "upstream": "orders", "external_auth": "sso" },
                             { "name": "orders-admin", "match": { "path_prefix": "/orders/admin" }, "upstream": "orders" }] }
                """#,
            "routes.d/30-shadowed.json": #"{ "routes": [{ "name": "shadowed", "match": { "path_prefix": "/orders" }, "upstream": "web" }] }"#,
            "routes.d/.10-orders.json.swp": "not json",
            "routes.d/notes.txt": "not json",
            "auth-services.json": #"{ "external_auth": { "sso": { "upstream": "orders", "path": "/auth" } } }"#,
        ])
        defer { folder.remove() }
        let result = folder.load()
        #expect(result.errors.isEmpty, "\(result.errors)")
        let config = try #require(result.config)
        #expect(config.routes.map(\.name) == ["home", "orders", "orders-admin", "billing", "shadowed"])
        // Warnings name the file, and so do the routes their messages point at.
        #expect(
            result.warnings.map(\.description) == [
                #"warning: routes.d/30-shadowed.json: routes[0].match: never matches: routes[0] of routes.d/10-orders.json ("orders") has the same match and comes first"#
            ])
        #expect(config.upstreams.map(\.name).sorted() == ["orders", "web"])
        #expect(config.upstream(named: "orders")?.targets.first?.port == 9001)
        #expect(config.externalAuth.map(\.name) == ["sso"])
        let files = ["routes.d/10-orders.json", "routes.d/20-billing.json", "routes.d/30-shadowed.json", "auth-services.json"].map { folder.path + "/" + $0 }
        #expect(config.includedFiles == files)
        #expect(Array(config.reloadedFiles.prefix(4)) == files)
        #expect(config.includePatterns == [folder.path + "/routes.d/*.json"])
        // /config shows the merged document: what runs, standing alone (it loads again to the same routes).
        let shown = try #require(config.source).rendered
        #expect(shown.contains(#""billing""#) && shown.contains(#""sso""#) && !shown.contains(#""include""#))
        let again = ConfigLoader.load(text: shown, environment: ["ORDERS_PORT": "9001"])
        #expect(again.errors.isEmpty && again.config?.routes.map(\.name) == config.routes.map(\.name), "\(again.errors)")
    }

    // Problems in included files name the file and the path inside it; problems with the include list itself
    // name the entry; nothing is half-loaded.
    @Test func problemsNameTheirFile() throws {
        let folder = try Folder([
            "gateway.json": Self.main(include: #"["routes.d/*.json", "missing.json", "empty/*.json", "r*/x.json", "routes.d"]"#),
            "routes.d/a.json": #"""
                { "upstreams": { "web": { "targets": ["http://127.0.0.1:2"] }, "api": { "targets": ["ftp://x"] } },
                  "routes": [{ "name": "a", "upstream": "ordres" }] }
                """#,
            "routes.d/b.json": #"{ "routes": [{ "name": "b", "upstream": "api", "timeout_ms": "soon" }], "listeners": [] }"#,
            "routes.d/c.json": "[1, 2]",
            "routes.d/d.json": "{ nope",
            "routes.d/e.json": "",
        ])
        defer { folder.remove() }
        try FileManager.default.createDirectory(atPath: folder.path + "/empty", withIntermediateDirectories: true)
        let result = folder.load()
        #expect(result.config == nil)
        let lines = result.diagnostics.map(\.description)
        let expected = [
            #"warning: include[2]: "empty/*.json" matches no file"#,
            #"include[3]: "r*/x.json": wildcards go in the file name only, not in folders"#,
            #"routes.d/a.json: upstreams.web: "web" is already defined in gateway.json"#,
            #"routes.d/b.json: listeners: an included file holds only routes, upstreams and external_auth"#,
            "routes.d/c.json: expected an object with routes, upstreams or external_auth",
            "routes.d/d.json: invalid JSON: line 1, column 3: expected a quoted key",
            "routes.d/e.json: invalid JSON: line 1, column 1: unexpected end of file, expected a value",
            "missing.json: no such file (\(folder.path)/missing.json)",
            "routes.d: not a regular file (\(folder.path)/routes.d)",
        ]
        #expect(Array(lines.prefix(expected.count)) == expected, "\(lines)")
        // Decoding and validation problems of included entries, at their place in their file.
        let located = lines.dropFirst(expected.count).filter { !$0.hasPrefix("warning: ") }.map { String($0.prefix { $0 != ":" }) + ":" + $0.drop { $0 != ":" }.dropFirst().prefix { $0 != ":" } }
        #expect(located == ["routes.d/a.json: upstreams.api.targets[0]", "routes.d/b.json: routes[0].timeout_ms", "routes.d/a.json: routes[0].upstream"], "\(lines)")
        let warnings = result.warnings.map(\.description).filter { !$0.contains("include[") }
        let unplaced = warnings.filter { !$0.hasPrefix("warning: routes.d/") }
        #expect(unplaced.isEmpty && warnings.count == 2, "\(warnings)")
    }

    // gateway.json's own section of the wrong type is reported, not hidden by what the files bring.
    @Test func mistypedSectionsStayReported() throws {
        let folder = try Folder([
            "gateway.json": Self.main(include: #"["routes.d/*.json"]"#, routes: #"{ "name": "home" }"#),
            "routes.d/a.json": #"{ "routes": [{ "name": "a", "upstream": "web" }] }"#,
        ])
        defer { folder.remove() }
        #expect(folder.load().errors.map(\.description) == ["routes: expected an array, found an object"])
    }

    // A config without include is untouched; include must be a list of paths.
    @Test func includeShapes() throws {
        let plain = ConfigLoader.load(text: Self.main(include: "[]"))
        #expect(plain.errors.isEmpty && plain.config?.includedFiles == [])
        let wrong = ConfigLoader.load(text: Self.main(include: #""routes.d/*.json""#)).errors.map(\.description)
        #expect(wrong == ["include: expected an array of file paths"])
        let empty = ConfigLoader.load(text: Self.main(include: #"[""]"#)).errors.map(\.description)
        #expect(empty == ["include[0]: expected a file path"])
    }
}
