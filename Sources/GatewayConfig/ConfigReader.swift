#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Foundation
import GatewayPolicy

/// Shared state of one decoding pass: the diagnostics found so far and the environment for `${NAME}`.
final class DecodingContext {
    private(set) var diagnostics: [Diagnostic] = []
    let environment: [String: String]
    /// `${file:PATH}` files read so far (absolute or as the base directory makes them), with their contents: a
    /// value read twice in one pass is the same value.
    private(set) var secretFiles: [(path: String, contents: String)] = []
    /// `deny_ips_file` and `allow_ips_file` lists read so far, with their ranges: a list several routes name is read
    /// once per pass (a reload reads them again; `reload.watch` watches them).
    private var addressLists: [(path: String, ranges: [CIDR])] = []
    var addressListFiles: [String] { addressLists.map(\.path) }
    /// Relative file paths (certificates, keys, CA files) are resolved against this: the config file's folder.
    let baseDirectory: String?

    init(environment: [String: String], baseDirectory: String? = nil) {
        self.environment = environment
        self.baseDirectory = baseDirectory
    }

    func error(_ path: JSONPath, _ message: String) {
        diagnostics.append(Diagnostic(path: path.description, message: message))
    }

    func warning(_ path: JSONPath, _ message: String) {
        diagnostics.append(Diagnostic(path: path.description, message: message, severity: .warning))
    }

    /// Replaces `${NAME}` with the environment variable's value and `${file:PATH}` with the contents of a file
    /// (`secretFile`); `$${` stands for a literal `${`. A variable that is not set is an error naming it.
    func substitute(_ text: String, at path: JSONPath) -> String? {
        guard text.contains("$") else { return text }
        var result = ""
        var rest = Substring(text)
        var ok = true
        while let dollar = rest.firstIndex(of: "$") {
            result += rest[..<dollar]
            let afterDollar = rest[rest.index(after: dollar)...]
            if afterDollar.hasPrefix("${") {  // "$${" -> literal "${"
                result += "${"
                rest = afterDollar.dropFirst(2)
            } else if afterDollar.hasPrefix("{"), let close = afterDollar.firstIndex(of: "}") {
                let name = String(afterDollar[afterDollar.index(after: afterDollar.startIndex)..<close])
                if name.hasPrefix("file:") {
                    if let contents = secretFile(String(name.dropFirst(5)), at: path) { result += contents } else { ok = false }
                } else if !DecodingContext.isVariableName(name) {
                    error(path, "invalid environment reference \"${\(name)}\" (names are letters, digits and _)")
                    ok = false
                } else if let value = environment[name] {
                    result += value
                } else {
                    error(path, "environment variable \"\(name)\" is not set")
                    ok = false
                }
                rest = afterDollar[afterDollar.index(after: close)...]
            } else {
                result += "$"
                rest = afterDollar
            }
        }
        result += rest
        return ok ? result : nil
    }

    /// Secrets larger than this are not secrets (a wrong path, most likely).
    static let maxSecretFileBytes = 65_536
    /// An address list of this size holds about a million ranges.
    static let maxAddressListBytes = 32 << 20

    /// The contents of the file `written` names (relative to the config's folder), for secrets mounted as files:
    /// Docker and Kubernetes secrets, systemd credentials. One final line break is dropped (`echo` and editors add
    /// it; a password never ends in one). Errors name the file, never its contents.
    private func secretFile(_ written: String, at path: JSONPath) -> String? {
        guard !written.isEmpty else {
            error(path, "\"${file:}\" names no file")
            return nil
        }
        let file = resolved(written)
        if let known = secretFiles.first(where: { $0.path == file }) { return known.contents }
        let tooLarge = "secret file \(written) is larger than 64 KiB: ${file:} is for secrets"
        guard let data = read(file, as: written, what: "secret file", limit: Self.maxSecretFileBytes, tooLarge: tooLarge, at: path) else { return nil }
        guard var contents = String(data: data, encoding: .utf8) else {
            error(path, "secret file \(written) is not UTF-8 text")
            return nil
        }
        if contents.hasSuffix("\r\n") || contents.hasSuffix("\n") { contents.removeLast() }  // "\r\n" is one Character
        secretFiles.append((file, contents))
        return contents
    }

    /// The ranges of an address list file: one address or CIDR range per line, `#` and `;` starting comments (the
    /// formats of Spamhaus DROP, FireHOL and most published blocklists), blank lines ignored. Every bad line is an
    /// error with its number (the first ten are listed).
    func addressList(_ written: String, at path: JSONPath) -> [CIDR]? {
        let file = resolved(written)
        if let known = addressLists.first(where: { $0.path == file }) { return known.ranges }
        let tooLarge = "address list \(written) is larger than 32 MiB"
        guard let data = read(file, as: written, what: "address list", limit: Self.maxAddressListBytes, tooLarge: tooLarge, at: path) else { return nil }
        var ranges: [CIDR] = []
        var bad: [String] = []
        var number = 0
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false) {
            number += 1
            let text = line.prefix { $0 != "#" && $0 != ";" }.trimmingCharacters(in: .whitespaces)
            guard !text.isEmpty else { continue }
            if let range = CIDR(text) { ranges.append(range) } else { bad.append("line \(number) (\"\(text.prefix(60))\")") }
        }
        guard bad.isEmpty else {
            let shown = bad.prefix(10).joined(separator: ", ") + (bad.count > 10 ? " and \(bad.count - 10) more" : "")
            error(path, "address list \(written): not an IP address or CIDR range at \(shown)")
            return nil
        }
        addressLists.append((file, ranges))
        return ranges
    }

    /// A file path made absolute against the config file's folder (as written when it is absolute, or without a folder).
    func resolved(_ written: String) -> String {
        guard !written.hasPrefix("/"), let base = baseDirectory else { return written }
        return base.hasSuffix("/") ? base + written : base + "/" + written
    }

    /// A regular file's bytes, at most `limit` of them. Only regular files (or links to one) are read: a FIFO or a
    /// device would block or never end. The bound is kept while reading, not taken from the size: files under /proc
    /// and /sys say 0 or 4096 whatever they hold.
    private func read(_ file: String, as written: String, what: String, limit: Int, tooLarge: String, at path: JSONPath) -> Data? {
        var info = stat()
        guard stat(file, &info) == 0 else {
            error(path, "\(what) \(written) cannot be read: \(String(cString: strerror(errno)))")
            return nil
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            error(path, "\(what) \(written) is not a regular file")
            return nil
        }
        let handle = FileHandle(forReadingAtPath: file)
        defer { try? handle?.close() }
        guard let handle, let data = try? handle.read(upToCount: limit + 1) ?? Data() else {
            error(path, "\(what) \(written) cannot be read")
            return nil
        }
        guard data.count <= limit else {
            error(path, tooLarge)
            return nil
        }
        return data
    }

    private static func isVariableName(_ name: String) -> Bool {
        guard let first = name.first, first == "_" || (first.isASCII && first.isLetter) else { return false }
        return name.allSatisfy { $0 == "_" || ($0.isASCII && ($0.isLetter || $0.isNumber)) }
    }
}

/// A value in the document together with where it is, so every read can report with a path.
struct ConfigNode {
    let value: JSONValue
    let path: JSONPath
    let context: DecodingContext

    func error(_ message: String) { context.error(path, message) }
    func warning(_ message: String) { context.warning(path, message) }

    private func mismatch(_ expected: String) {
        error("expected \(expected), found \(value.typeDescription)")
    }

    /// A string, after `${ENV}` substitution.
    func string() -> String? {
        guard case .string(let text) = value else {
            mismatch("a string")
            return nil
        }
        return context.substitute(text, at: path)
    }

    /// A file path, made absolute against the config file's folder (files are read when the gateway starts
    /// and by `gateway check`, not while decoding).
    func filePath() -> String? {
        nonEmptyString().map(context.resolved)
    }

    func nonEmptyString() -> String? {
        guard let text = string() else { return nil }
        guard !text.isEmpty else {
            error("must not be empty")
            return nil
        }
        return text
    }

    func bool() -> Bool? {
        guard case .bool(let flag) = value else {
            mismatch("true or false")
            return nil
        }
        return flag
    }

    func int(_ range: ClosedRange<Int>) -> Int? {
        guard case .integer(let number) = value else {
            if case .double = value {
                error("expected a whole number")
            } else {
                mismatch("a number")
            }
            return nil
        }
        guard range.contains(number) else {
            if range.upperBound == Int.max {
                error("\(number) is too small (at least \(range.lowerBound))")
            } else {
                error("\(number) is out of range (\(range.lowerBound)...\(range.upperBound))")
            }
            return nil
        }
        return number
    }

    func number(_ range: ClosedRange<Double>) -> Double? {
        let number: Double
        switch value {
        case .integer(let whole): number = Double(whole)
        case .double(let fraction): number = fraction
        default:
            mismatch("a number")
            return nil
        }
        guard range.contains(number) else {
            error("\(number) is out of range (\(range.lowerBound)...\(range.upperBound))")
            return nil
        }
        return number
    }

    /// One of a fixed set of strings, with a suggestion for near misses.
    func oneOf(_ options: [String]) -> String? {
        guard let text = string() else { return nil }
        guard options.contains(text) else {
            let choices = options.map { "\"\($0)\"" }.joined(separator: ", ")
            if let guess = closestMatch(to: text, among: options) {
                error("unknown value \"\(text)\" (did you mean \"\(guess)\"?); expected one of \(choices)")
            } else {
                error("unknown value \"\(text)\"; expected one of \(choices)")
            }
            return nil
        }
        return text
    }

    /// Elements that fail to decode are left out; their diagnostics are already recorded.
    func array<T>(_ element: (ConfigNode) -> T?) -> [T]? {
        guard case .array(let elements) = value else {
            mismatch("an array")
            return nil
        }
        return elements.enumerated().compactMap { index, value in
            element(ConfigNode(value: value, path: path / index, context: context))
        }
    }

    func stringArray() -> [String]? { array { $0.string() } }

    /// An object read field by field; keys the closure never asked for are reported as unknown.
    func object<T>(_ body: (ObjectReader) -> T?) -> T? {
        guard case .object(let members) = value else {
            mismatch("an object")
            return nil
        }
        let reader = ObjectReader(node: self, members: members)
        let result = body(reader)
        reader.reportUnknownKeys()
        return result
    }

    /// An object used as a map from operator-chosen names to values (`upstreams`, `match.headers`).
    func map<T>(_ element: (String, ConfigNode) -> T?) -> [(key: String, value: T)]? {
        guard case .object(let members) = value else {
            mismatch("an object")
            return nil
        }
        return members.compactMap { key, value in
            element(key, ConfigNode(value: value, path: path / key, context: context)).map { (key, $0) }
        }
    }
}

/// Reads the fields of one JSON object and remembers which keys were consumed.
final class ObjectReader {
    let node: ConfigNode
    private let members: [(key: String, value: JSONValue)]
    private var consumed: Set<String> = []

    init(node: ConfigNode, members: [(key: String, value: JSONValue)]) {
        self.node = node
        self.members = members
    }

    var path: JSONPath { node.path }

    private func child(_ key: String) -> ConfigNode? {
        consumed.insert(key)
        guard let member = members.first(where: { $0.key == key }) else { return nil }
        return ConfigNode(value: member.value, path: node.path / key, context: node.context)
    }

    func has(_ key: String) -> Bool {
        members.contains { $0.key == key && $0.value != .null }
    }

    /// A key that must be present (and not null).
    func required<T>(_ key: String, _ read: (ConfigNode) -> T?) -> T? {
        guard let child = child(key), child.value != .null else {
            node.context.error(node.path / key, "missing required key")
            return nil
        }
        return read(child)
    }

    /// A key that may be absent; `null` counts as absent.
    func optional<T>(_ key: String, _ read: (ConfigNode) -> T?) -> T? {
        guard let child = child(key), child.value != .null else { return nil }
        return read(child)
    }

    /// Like `optional`, but tells an explicit `null` (switch it off) from an absent key (use the default).
    func nullable<T>(_ key: String, default defaultValue: T?, _ read: (ConfigNode) -> T?) -> T? {
        guard let child = child(key) else { return defaultValue }
        if child.value == .null { return nil }
        return read(child) ?? defaultValue
    }

    /// Marks a key as known without reading it here (validated elsewhere).
    func accept(_ key: String) { consumed.insert(key) }

    fileprivate func reportUnknownKeys() {
        for (key, _) in members where !consumed.contains(key) {
            if let guess = closestMatch(to: key, among: consumed) {
                node.context.error(node.path / key, "unknown key (did you mean \"\(guess)\"?)")
            } else {
                let known = consumed.sorted().map { "\"\($0)\"" }.joined(separator: ", ")
                node.context.error(node.path / key, "unknown key; known keys here: \(known)")
            }
        }
    }
}
