import Foundation
import GatewayCore
import GatewayHTTP
import GatewayPolicy
import NIOCore

/// The cache tier every gateway instance shares (`cache.store: "redis"`): all variants of one URI in one
/// Redis string, with a TTL as long as a copy may still be served or revalidated, and a set per route
/// so a route can be purged.
///
/// Keys: `gw:cache:{SHA1(uri key)}` (the hash tag keeps each URI in one Redis Cluster slot),
/// `gw:cache:route:NAME` and `gw:cache:tag:TAG` (sets of entry keys, for purges). Values: `GWC1`, the variant count, then per variant a JSON description
/// (status, headers, times, selectors, route) and the raw body, each length-prefixed. Redis failures
/// are misses (lookups) or skipped writes: the memory tier and the upstream still answer.
public final class RedisCacheTier: SharedCacheTier {
    private let client: RedisClient
    static let prefix = "gw:cache:"

    public init(client: RedisClient) { self.client = client }

    static func entryKey(_ key: String) -> String { prefix + "{" + SHA1.hex(key) + "}" }
    static func routeKey(_ route: String) -> String { prefix + "route:" + route }
    static func tagKey(_ tag: String) -> String { prefix + "tag:" + tag }

    public func fetch(_ key: String, on eventLoop: EventLoop) -> EventLoopFuture<[CacheEntry]> {
        eventLoop.flatSubmit {
            self.client.send(["GET", Self.entryKey(key)], on: eventLoop).map { value in
                guard case .bulk(let bytes) = value else { return [] }
                return Self.decode(bytes) ?? []
            }.recover { _ in [] }
        }
    }

    public func store(_ key: String, variants: [CacheEntry], on eventLoop: EventLoop) {
        guard let route = variants.first?.route else { return }
        let ttl = variants.map(\.retention).max() ?? 1
        let entryKey = Self.entryKey(key)
        let bytes = Self.encode(variants)
        eventLoop.execute {
            _ = self.client.send(binary: [Array("SET".utf8), Array(entryKey.utf8), bytes, Array("EX".utf8), Array(String(ttl).utf8)], on: eventLoop)
            _ = self.client.send(["SADD", Self.routeKey(route), entryKey], on: eventLoop)
            // A tag's set lives as long as its longest-kept entry: a TTL set once (NX), then only lengthened (GT).
            for tag in Set(variants.flatMap(\.tags)) {
                let tagKey = Self.tagKey(tag)
                _ = self.client.send(["SADD", tagKey, entryKey], on: eventLoop)
                _ = self.client.send(["EXPIRE", tagKey, String(ttl), "NX"], on: eventLoop)
                _ = self.client.send(["EXPIRE", tagKey, String(ttl), "GT"], on: eventLoop)
            }
        }
    }

    public func remove(_ key: String, on eventLoop: EventLoop) {
        let entryKey = Self.entryKey(key)
        eventLoop.execute { _ = self.client.send(["DEL", entryKey], on: eventLoop) }
    }

    public func purge(route: String?, on eventLoop: EventLoop) -> EventLoopFuture<Int> {
        eventLoop.flatSubmit {
            if let route { return self.deleteMembers(of: Self.routeKey(route), on: eventLoop) }
            return self.scanAndDelete(cursor: "0", deleted: 0, on: eventLoop)
        }
    }

    public func purge(tag: String, on eventLoop: EventLoop) -> EventLoopFuture<Int> {
        eventLoop.flatSubmit { self.deleteMembers(of: Self.tagKey(tag), on: eventLoop) }
    }

    /// Deletes the entries a route's or tag's set names, and the set; how many entries there were.
    private func deleteMembers(of setKey: String, on eventLoop: EventLoop) -> EventLoopFuture<Int> {
        client.send(["SMEMBERS", setKey], on: eventLoop).flatMap { members -> EventLoopFuture<Int> in
            guard case .array(let items) = members, !items.isEmpty else { return eventLoop.makeSucceededFuture(0) }
            let keys = items.compactMap(\.string)
            return self.client.send(["DEL"] + keys + [setKey], on: eventLoop).map { value in
                if case .integer(let count) = value { return max(0, count - 1) }
                return 0
            }
        }
    }

    private func scanAndDelete(cursor: String, deleted: Int, on eventLoop: EventLoop) -> EventLoopFuture<Int> {
        client.send(["SCAN", cursor, "MATCH", Self.prefix + "*", "COUNT", "1000"], on: eventLoop).flatMap { reply in
            guard case .array(let parts) = reply, parts.count == 2, let next = parts[0].string, case .array(let items) = parts[1] else {
                return eventLoop.makeSucceededFuture(deleted)
            }
            let keys = items.compactMap(\.string)
            let removed: EventLoopFuture<Int> =
                keys.isEmpty
                ? eventLoop.makeSucceededFuture(0)
                : self.client.send(["DEL"] + keys, on: eventLoop).map { value in
                    if case .integer(let count) = value { return count }
                    return 0
                }
            return removed.flatMap { count in
                next == "0" ? eventLoop.makeSucceededFuture(deleted + count) : self.scanAndDelete(cursor: next, deleted: deleted + count, on: eventLoop)
            }
        }
    }

    // MARK: Encoding

    static func encode(_ variants: [CacheEntry]) -> [UInt8] {
        var out = Array("GWC1".utf8)
        appendLength(variants.count, to: &out)
        for entry in variants {
            let meta: [String: Any] = [
                "status": entry.status,
                "headers": entry.headers.map { [$0.name, $0.value] },
                "request_time": entry.requestTime,
                "response_time": entry.responseTime,
                "lifetime": entry.lifetime,
                "route": entry.route,
                "selectors": entry.selectors.map { [$0.name, $0.value as Any? ?? NSNull()] },
                "tags": entry.tags,
            ]
            let json = (try? JSONSerialization.data(withJSONObject: meta)) ?? Data("{}".utf8)
            appendLength(json.count, to: &out)
            out += json
            appendLength(entry.body.readableBytes, to: &out)
            out += entry.body.readableBytesView
        }
        return out
    }

    static func decode(_ bytes: [UInt8]) -> [CacheEntry]? {
        guard bytes.count >= 8, Array(bytes[0..<4]) == Array("GWC1".utf8) else { return nil }
        var offset = 4
        guard let count = readLength(bytes, &offset) else { return nil }
        var variants: [CacheEntry] = []
        for _ in 0..<count {
            guard let metaLength = readLength(bytes, &offset), offset + metaLength <= bytes.count else { return nil }
            let metaBytes = Data(bytes[offset..<offset + metaLength])
            offset += metaLength
            guard let bodyLength = readLength(bytes, &offset), offset + bodyLength <= bytes.count else { return nil }
            let body = ByteBuffer(bytes: bytes[offset..<offset + bodyLength])
            offset += bodyLength
            guard let meta = (try? JSONSerialization.jsonObject(with: metaBytes)) as? [String: Any],
                let status = meta["status"] as? Int, let pairs = meta["headers"] as? [[String]],
                let requestTime = meta["request_time"] as? Int, let responseTime = meta["response_time"] as? Int,
                let lifetime = meta["lifetime"] as? Int, let route = meta["route"] as? String,
                let selectors = meta["selectors"] as? [[Any]]
            else { return nil }
            let headers = pairs.compactMap { $0.count == 2 ? (name: $0[0], value: $0[1]) : nil }
            let facts = CacheEntry.facts(of: ResponseHead(status: status, headers: HeaderList(headers.map { ($0.name, $0.value) })))
            var entry = CacheEntry(
                status: status, headers: headers, body: body, requestTime: requestTime, responseTime: responseTime, facts: facts,
                lifetime: lifetime,
                selectors: selectors.compactMap { pair in
                    guard pair.count == 2, let name = pair[0] as? String else { return nil }
                    return (name: name, value: pair[1] as? String)
                }, route: route)
            entry.tags = meta["tags"] as? [String] ?? []  // absent in entries stored before tags existed
            variants.append(entry)
        }
        return variants
    }

    private static func appendLength(_ length: Int, to out: inout [UInt8]) {
        let value = UInt32(truncatingIfNeeded: length)
        out += [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)]
    }

    private static func readLength(_ bytes: [UInt8], _ offset: inout Int) -> Int? {
        guard offset + 4 <= bytes.count else { return nil }
        let value = Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
        offset += 4
        return value
    }
}
