extension StringProtocol {
    /// Without leading and trailing spaces and tabs (the optional whitespace around HTTP field values and list
    /// elements).
    public func trimmingASCIISpaces() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let start = firstIndex(where: { !isSpace($0) }), let end = lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return String(self[start...end])
    }
}
