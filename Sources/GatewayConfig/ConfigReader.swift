/// Shared state of one decoding pass: the diagnostics found so far and the environment for `${NAME}`.
final class DecodingContext {
    private(set) var diagnostics: [Diagnostic] = []
    let environment: [String: String]
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

    /// Replaces `${NAME}` with the environment variable's value; `$${` stands for a literal `${`.
    /// A variable that is not set is an error naming it.
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
                if !DecodingContext.isVariableName(name) {
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
        guard let path = nonEmptyString() else { return nil }
        guard !path.hasPrefix("/"), let base = context.baseDirectory else { return path }
        return base.hasSuffix("/") ? base + path : base + "/" + path
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
