import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// `include`: routes, upstreams and `external_auth` services kept in files of their own (a file per team or
/// service, a folder a deploy job writes into), merged into gateway.json before it is decoded, as NGINX's
/// `include conf.d/*.conf` or Traefik's directory provider do. Paths are relative to gateway.json's folder; a `*`
/// or `?` in the file name (not in folders) takes every matching file, in name order, hidden files aside.
///
/// Included routes come after gateway.json's own, file by file (which matters only for ties in specificity);
/// upstream and service names must be unique across all files. Every problem names its file:
/// `routes.d/orders.json: routes[0].upstream: unknown upstream "ordres"`.
public enum ConfigIncludes {
    /// What an included file may hold.
    static let includableKeys = ["routes", "upstreams", "external_auth"]
    /// Larger files are refused (a pattern matching something else than config, `/dev/zero` say).
    static let maxFileBytes = 16 << 20

    struct Expansion {
        /// gateway.json with the included entries merged in.
        var value: JSONValue
        /// The included files, in order.
        var files: [String] = []
        /// Each `include` entry, as a path from the working directory (what a watcher lists again).
        var patterns: [String] = []
        var diagnostics: [Diagnostic] = []
        /// Where each included route (by its index in the merged `routes`) came from: the file's name as written.
        var routeOrigins: [(range: Range<Int>, file: String)] = []
        /// Where each included upstream and service came from, by `upstreams` / `external_auth` and name.
        var namedOrigins: [String: [String: String]] = [:]

        /// A diagnostic of the merged document, pointed at the file its entry came from (and the routes its message
        /// names too: "routes[3] ("orders") has the same match" says which file's routes[3]).
        func relocated(_ diagnostic: Diagnostic) -> Diagnostic {
            var moved = diagnostic
            if !routeOrigins.isEmpty { moved.message = relocatedRoutes(in: diagnostic.message) }
            let path = diagnostic.path
            if path.hasPrefix("routes["), let close = path.firstIndex(of: "]"),
                let index = Int(path[path.index(path.startIndex, offsetBy: 7)..<close]),
                let origin = routeOrigins.first(where: { $0.range.contains(index) })
            {
                moved.path = "\(origin.file): routes[\(index - origin.range.lowerBound)]" + path[path.index(after: close)...]
                return moved
            }
            for (section, origins) in namedOrigins {
                for (name, file) in origins {
                    let plain = JSONPath.root / section / name
                    let text = plain.description
                    guard path == text || path.hasPrefix(text + ".") || path.hasPrefix(text + "[") else { continue }
                    moved.path = "\(file): \(path)"
                    return moved
                }
            }
            return moved
        }

        /// `text` with each `routes[N]` of an included route as `routes[M] of FILE`.
        func relocatedRoutes(in text: String) -> String {
            var output = ""
            var rest = Substring(text)
            while let start = rest.range(of: "routes[") {
                output += rest[..<start.lowerBound]
                let digits = rest[start.upperBound...].prefix { $0.isASCII && $0.isNumber }
                guard let index = Int(digits), rest[digits.endIndex...].first == "]" else {
                    output += rest[start]
                    rest = rest[start.upperBound...]
                    continue
                }
                output += ConfigIncludes.routeLocation(index, origins: routeOrigins)
                rest = rest[rest.index(after: digits.endIndex)...]
            }
            return output + rest
        }
    }

    /// Reads the files `include` names and merges them into `document`.
    static func expand(_ document: JSONValue, baseDirectory: String?) -> Expansion {
        var expansion = Expansion(value: document)
        guard case .object(var members) = document, let include = members.first(where: { $0.key == "include" })?.value else {
            return expansion
        }
        guard case .array(let entries) = include else {
            expansion.diagnostics.append(Diagnostic(path: "include", message: "expected an array of file paths"))
            return expansion
        }
        var files: [(path: String, shown: String)] = []
        for (index, entry) in entries.enumerated() {
            let at = "include[\(index)]"
            guard case .string(let written) = entry, !written.isEmpty else {
                expansion.diagnostics.append(Diagnostic(path: at, message: "expected a file path"))
                continue
            }
            let path = written.hasPrefix("/") ? written : (baseDirectory.map { $0 + "/" } ?? "") + written
            expansion.patterns.append(path)
            let folder = (written as NSString).deletingLastPathComponent
            guard !folder.contains(where: { $0 == "*" || $0 == "?" }) else {
                expansion.diagnostics.append(Diagnostic(path: at, message: "\"\(written)\": wildcards go in the file name only, not in folders"))
                continue
            }
            if isPattern(written) {
                let matched = Self.files(matching: path)
                if matched.isEmpty { expansion.diagnostics.append(Diagnostic(path: at, message: "\"\(written)\" matches no file", severity: .warning)) }
                let shownFolder = folder.isEmpty ? "" : folder + "/"
                files += matched.map { ($0, shownFolder + ($0 as NSString).lastPathComponent) }
            } else {
                files.append((path, written))
            }
        }
        var seen: Set<String> = []
        files = files.filter { seen.insert($0.path).inserted }  // two patterns naming one file: included once

        var routes: [JSONValue] = []
        var keyed: [String: [(key: String, value: JSONValue)]] = [:]
        // gateway.json's own section of the wrong type is left as it is (decoding reports it), not merged over.
        var mergeable = Set(includableKeys)
        for key in includableKeys {
            switch (key, members.first(where: { $0.key == key })?.value) {
            case ("routes", .array(let items)?): routes = items
            case (_, .object(let fields)?) where key != "routes": keyed[key] = fields
            case (_, nil): break
            default: mergeable.remove(key)
            }
        }
        var named: [String: [String: String]] = [:]
        for key in includableKeys where key != "routes" {
            for (name, _) in keyed[key] ?? [] { named[key, default: [:]][name] = "gateway.json" }
        }
        var includedRoutes = false
        for (path, shown) in files {
            guard let document = read(path, shown: shown, into: &expansion.diagnostics) else { continue }
            expansion.files.append(path)
            for (key, value) in document {
                switch (key, value) {
                case ("routes", .array(let items)):
                    expansion.routeOrigins.append((routes.count..<(routes.count + items.count), shown))
                    routes += items
                    includedRoutes = true
                case ("upstreams", .object(let fields)), ("external_auth", .object(let fields)):
                    for (name, entry) in fields {
                        if let earlier = named[key]?[name] {
                            expansion.diagnostics.append(
                                Diagnostic(path: "\(shown): \(JSONPath.root / key / name)", message: "\"\(name)\" is already defined in \(earlier)"))
                            continue
                        }
                        named[key, default: [:]][name] = shown
                        expansion.namedOrigins[key, default: [:]][name] = shown
                        keyed[key, default: []].append((name, entry))
                    }
                case ("routes", _):
                    expansion.diagnostics.append(Diagnostic(path: "\(shown): routes", message: "expected an array"))
                case ("upstreams", _), ("external_auth", _):
                    expansion.diagnostics.append(Diagnostic(path: "\(shown): \(key)", message: "expected an object"))
                default:
                    expansion.diagnostics.append(
                        Diagnostic(path: "\(shown): \(JSONPath.root / key)", message: "an included file holds only routes, upstreams and external_auth"))
                }
            }
        }
        // The merged document stands alone: what /config shows loads again to the same config, and never includes
        // the files a second time.
        members.removeAll { $0.key == "include" }
        expansion.value = .object(members)
        guard !expansion.files.isEmpty else { return expansion }
        // Merged in place, so the document keeps its order (and /config shows what runs).
        for key in includableKeys where mergeable.contains(key) {
            let merged: JSONValue = key == "routes" ? .array(routes) : .object(keyed[key] ?? [])
            if let index = members.firstIndex(where: { $0.key == key }) {
                members[index].value = merged
            } else if key == "routes" ? includedRoutes : !(keyed[key] ?? []).isEmpty {
                members.append((key, merged))
            }
        }
        expansion.value = .object(members)
        return expansion
    }

    /// An included file's members, or nil (with the reason recorded) when it cannot be used.
    private static func read(_ path: String, shown: String, into diagnostics: inout [Diagnostic]) -> [(key: String, value: JSONValue)]? {
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        guard let attributes else {
            diagnostics.append(Diagnostic(path: shown, message: "no such file (\(path))"))
            return nil
        }
        guard attributes[.type] as? FileAttributeType == .typeRegular else {
            diagnostics.append(Diagnostic(path: shown, message: "not a regular file (\(path))"))
            return nil
        }
        // Read with a bound, whatever size the file system states (files in /proc say 0 and go on).
        let data: Data?
        if let handle = FileHandle(forReadingAtPath: path) {
            data = try? handle.read(upToCount: maxFileBytes + 1) ?? Data()  // nil at once: an empty file
            try? handle.close()
        } else {
            data = nil
        }
        guard (data?.count ?? 0) <= maxFileBytes else {
            diagnostics.append(Diagnostic(path: shown, message: "larger than 16 MiB (\(path))"))
            return nil
        }
        guard let data, let text = String(data: data, encoding: .utf8) else {
            diagnostics.append(Diagnostic(path: shown, message: "cannot be read as UTF-8 text (\(path))"))
            return nil
        }
        let value: JSONValue
        do {
            value = try JSONParser.parse(text)
        } catch {
            diagnostics.append(Diagnostic(path: shown, message: "invalid JSON: \(error)"))
            return nil
        }
        guard case .object(let members) = value else {
            diagnostics.append(Diagnostic(path: shown, message: "expected an object with routes, upstreams or external_auth"))
            return nil
        }
        return members
    }

    /// Where route `index` of the merged document is written: `routes[3]`, or `routes[1] of routes.d/orders.json`.
    static func routeLocation(_ index: Int, origins: [(range: Range<Int>, file: String)]) -> String {
        guard let origin = origins.first(where: { $0.range.contains(index) }) else { return "routes[\(index)]" }
        return "routes[\(index - origin.range.lowerBound)] of \(origin.file)"
    }

    static func isPattern(_ path: String) -> Bool { path.contains("*") || path.contains("?") }

    /// The regular, non-hidden files a pattern's file name matches in its folder, sorted by name.
    public static func files(matching pattern: String) -> [String] {
        let folder = (pattern as NSString).deletingLastPathComponent
        let name = (pattern as NSString).lastPathComponent
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.isEmpty ? "." : folder)) ?? []
        return names.filter { !$0.hasPrefix(".") && fnmatch(name, $0, 0) == 0 }.sorted().map { folder.isEmpty ? $0 : folder + "/" + $0 }.filter {
            (try? FileManager.default.attributesOfItem(atPath: $0)[.type] as? FileAttributeType) == .typeRegular
        }
    }
}
