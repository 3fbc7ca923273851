// LeakSanitizer reports values of an `indirect` Swift enum as leaked although a global still holds them: the
// enum keeps its case tag in the spare bits of the box pointer, so LSan does not recognise the pointer. This is
// why JSONValue is not `indirect`. Run:
//   swiftc -sanitize=address scripts/sanitizers/lsan-indirect-enum.swift -o /tmp/repro && /tmp/repro
// It prints 4 and then LSan's "Direct leak" reports; without `indirect` it prints only 4.
indirect enum Value {
    case null
    case string(String)
    case array([Value])
    case object([(key: String, value: Value)])
}

// Reachable for the whole run through a global: anything LSan calls a leak here is a false positive.
var kept: [Value] = []
for index in 0..<4 {
    kept.append(.object([(key: "k\(index)", value: .array([.string(String(repeating: "x", count: 40)), .null]))]))
}
print(kept.count)
