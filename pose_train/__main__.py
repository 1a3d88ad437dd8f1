from pose_train.cli import main

main()
