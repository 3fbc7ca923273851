import ArgumentParser
import GatewayApp

// Dispatch by hand so the async `run` subcommand is awaited and the sync ones just run.
do {
    var command = try GatewayCommand.parseAsRoot()
    if let run = command as? RunCommand {
        try await run.execute()
    } else if let check = command as? CheckCommand {
        try await check.execute()
    } else if let explain = command as? ExplainCommand {
        try await explain.execute()
    } else {
        try command.run()
    }
} catch {
    GatewayCommand.exit(withError: error)
}
