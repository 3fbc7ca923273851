import GatewayConfig
import GatewayCore
import GatewayHTTP
import NIOCore
import NIOEmbedded
import Testing

@testable import GatewayRedis

/// Cache tags without sockets: which fields name them, that the Redis encoding keeps them, and that a purge by tag
/// drops exactly the URIs with a variant so tagged from the memory tier.
@Suite struct CacheTagTests {
    func entry(route: String = "r", tags: [String]) -> CacheEntry {
        let head = ResponseHead(status: 200, headers: HeaderList([("Cache-Control", "max-age=60")]))
        var entry = CacheEntry(
            status: 200, headers: [(name: "cache-control", value: "max-age=60")], body: ByteBuffer(string: "body"), requestTime: 1, responseTime: 2,
            facts: CacheEntry.facts(of: head), lifetime: 60, selectors: [], route: route)
        entry.tags = tags
        return entry
    }

    // Surrogate-Key splits on spaces, Cache-Tag on commas; repeated fields add up, each tag once, in order.
    @Test func tagFields() {
        let headers = HeaderList([
            ("Surrogate-Key", "product-1  list"), ("Content-Type", "application/json"), ("Cache-Tag", "list, product-2,,category-9"),
            ("surrogate-key", "product-1 extra"),
        ])
        #expect(CacheEntry.tags(of: headers) == ["product-1", "list", "extra", "product-2", "category-9"])
        #expect(CacheEntry.tags(of: HeaderList([("X-Other", "a")])).isEmpty)
        let many = HeaderList([("Surrogate-Key", (0..<500).map { "k\($0)" }.joined(separator: " "))])
        #expect(CacheEntry.tags(of: many).count == 128)
    }

    // Tags survive the shared tier's encoding; entries stored before tags existed decode with none.
    @Test func redisEncodingKeepsTags() throws {
        let decoded = try #require(RedisCacheTier.decode(RedisCacheTier.encode([entry(tags: ["a", "b c"]), entry(tags: [])])))
        #expect(decoded.map(\.tags) == [["a", "b c"], []])
        #expect(RedisCacheTier.tagKey("list") == "gw:cache:tag:list")
    }

    @Test func purgeByTagInMemory() throws {
        let cache = ResponseCache(config: CacheConfig())
        let loop = EmbeddedEventLoop()
        cache.store("h/a", entry(tags: ["product-1", "list"]), on: loop)
        cache.store("h/b", entry(tags: ["product-2", "list"]), on: loop)
        cache.store("h/c", entry(tags: []), on: loop)
        #expect(try cache.purge(tags: ["product-1"], on: loop).wait() == 1)
        #expect(cache.memoryVariants("h/a") == nil && cache.memoryVariants("h/b") != nil)
        #expect(try cache.purge(tags: ["nothing", "list"], on: loop).wait() == 1)
        #expect(cache.memoryVariants("h/b") == nil && cache.memoryVariants("h/c") != nil)
    }
}
