/// A route's `match.path_template`: a path with variable segments, as Envoy's URI templates write them.
/// `/users/{id}/orders` matches `/users/42/orders`; `{name}` (or `*`) is exactly one non-empty segment,
/// `{name=**}` (or `**`), allowed last only, is the rest of the path, possibly empty. Literal segments compare
/// ASCII case-insensitively, like every path rule. Captured text is the request's, as normalised.
///
/// A `rewrite_path` may then build the upstream path from the variables: `/v2/accounts/{id}/orders`.
public struct PathTemplate: Sendable, Equatable, CustomStringConvertible {
    public enum Segment: Sendable, Equatable {
        case literal(String)
        /// One non-empty segment; the name when the template gave one.
        case one(String?)
        /// The remaining segments, zero or more.
        case rest(String?)
    }

    public let segments: [Segment]
    public let description: String

    /// The template, or why it is not one.
    public static func parse(_ text: String) -> Result<PathTemplate, TemplateError> {
        guard text.hasPrefix("/") else { return .failure(TemplateError("must start with \"/\"")) }
        var segments: [Segment] = []
        var names: Set<String> = []
        let parts = text.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
        for (index, part) in parts.enumerated() {
            let segment: Segment
            if part == "*" {
                segment = .one(nil)
            } else if part == "**" {
                segment = .rest(nil)
            } else if part.hasPrefix("{") && part.hasSuffix("}") {
                let inner = part.dropFirst().dropLast()
                let (name, isRest): (Substring, Bool) =
                    inner.hasSuffix("=**") ? (inner.dropLast(3), true) : inner.hasSuffix("=*") ? (inner.dropLast(2), false) : (inner, false)
                guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) else {
                    return .failure(TemplateError("\"\(part)\" is not a variable (letters, digits and _ between braces, e.g. {id} or {path=**})"))
                }
                guard names.insert(String(name)).inserted else { return .failure(TemplateError("{\(name)} appears twice")) }
                segment = isRest ? .rest(String(name)) : .one(String(name))
            } else {
                guard !part.contains("{"), !part.contains("}"), !part.contains("*") else {
                    return .failure(TemplateError("\"\(part)\": a variable takes a whole segment ({name}, *, or {name=**} last)"))
                }
                guard !part.isEmpty || index == parts.count - 1 else { return .failure(TemplateError("empty segment (//)")) }
                segment = .literal(String(part))
            }
            if case .rest = segment, index != parts.count - 1 {
                return .failure(TemplateError("** (the rest of the path) can only be the last segment"))
            }
            segments.append(segment)
        }
        return .success(PathTemplate(segments: segments, description: text))
    }

    public struct TemplateError: Error, Sendable, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    /// The names of the variables, in order.
    public var variables: [String] {
        segments.compactMap { segment in
            switch segment {
            case .literal: return nil
            case .one(let name), .rest(let name): return name
            }
        }
    }

    /// How specific the template is, on the scale of prefix rules (1 + the bytes of the fixed text): a
    /// template with more literal text beats one with less, and a prefix as long as its literal text.
    public var specificity: Int {
        1 + segments.reduce(0) { total, segment in
            if case .literal(let text) = segment { return total + 1 + text.utf8.count }
            return total + 1
        }
    }

    /// The variables' values when `path` (no query) matches, else nil.
    public func match(_ path: Substring) -> [String: Substring]? {
        guard path.first == "/" else { return nil }
        var captures: [String: Substring] = [:]
        var rest = path.dropFirst()
        for (index, segment) in segments.enumerated() {
            let isLast = index == segments.count - 1
            // Before a final `**` the path may end: `/users/{id}/**` matches `/users/42` (the rest is empty).
            let mayEnd = isLast || (index == segments.count - 2 && segments.last.map(Self.isRest) == true)
            switch segment {
            case .rest(let name):
                if let name { captures[name] = rest }
                return captures
            case .literal(let text):
                let (part, remainder) = Self.nextSegment(rest)
                guard part.utf8.elementsEqual(text.utf8, by: Self.equalsIgnoringASCIICase) else { return nil }
                guard remainder == nil ? mayEnd : !isLast else { return nil }
                rest = remainder ?? rest[rest.endIndex...]
            case .one(let name):
                let (part, remainder) = Self.nextSegment(rest)
                guard !part.isEmpty, remainder == nil ? mayEnd : !isLast else { return nil }
                if let name { captures[name] = part }
                rest = remainder ?? rest[rest.endIndex...]
            }
        }
        return captures
    }

    private static func isRest(_ segment: Segment) -> Bool {
        if case .rest = segment { return true }
        return false
    }

    /// The segment up to the next "/", and what follows that slash (nil when there is none).
    private static func nextSegment(_ text: Substring) -> (Substring, Substring?) {
        guard let slash = text.firstIndex(of: "/") else { return (text, nil) }
        return (text[..<slash], text[text.index(after: slash)...])
    }

    private static func equalsIgnoringASCIICase(_ a: UInt8, _ b: UInt8) -> Bool {
        a == b || (a | 0x20 == b | 0x20 && (a | 0x20) >= 0x61 && (a | 0x20) <= 0x7A)
    }
}

/// A route's `rewrite_path`: the upstream path built from a template's variables (`/v2/users/{id}`); the query
/// is kept as the client sent it.
public struct PathRewrite: Sendable, Equatable, CustomStringConvertible {
    enum Part: Sendable, Equatable {
        case text(String)
        case variable(String)
    }

    let parts: [Part]
    public let description: String

    /// The rewrite, or why it cannot be one for `template`.
    public static func parse(_ text: String, for template: PathTemplate) -> Result<PathRewrite, PathTemplate.TemplateError> {
        guard text.hasPrefix("/") else { return .failure(.init("must start with \"/\"")) }
        var parts: [Part] = []
        var rest = Substring(text)
        while let open = rest.firstIndex(of: "{") {
            if open > rest.startIndex { parts.append(.text(String(rest[..<open]))) }
            guard let close = rest[open...].firstIndex(of: "}") else { return .failure(.init("a { without its }")) }
            let name = String(rest[rest.index(after: open)..<close])
            guard template.variables.contains(name) else {
                let known = template.variables.map { "{\($0)}" }.joined(separator: ", ")
                return .failure(.init("{\(name)} is not a variable of the path_template" + (known.isEmpty ? "" : " (it has \(known))")))
            }
            parts.append(.variable(name))
            rest = rest[rest.index(after: close)...]
        }
        if rest.contains("}") { return .failure(.init("a } without its {")) }
        if !rest.isEmpty { parts.append(.text(String(rest))) }
        guard !text.contains("?"), !text.contains("#"), !text.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F }) else {
            return .failure(.init("a path only: no query, fragment or spaces"))
        }
        return .success(PathRewrite(parts: parts, description: text))
    }

    /// The new path from the captured values (a `**` variable that matched nothing adds nothing).
    public func apply(_ captures: [String: Substring]) -> String {
        var path = ""
        for part in parts {
            switch part {
            case .text(let text): path += text
            case .variable(let name): path += captures[name] ?? ""
            }
        }
        return path
    }
}
